// Deliberate mistakes: `tsc --noEmit` must reject each line below (tests/unit/test_js_types.py counts them).
import { connect } from "cloudisense";

const client = connect("ws://127.0.0.1:8765/ws");
client.call("node-b", "system");                                 // error 1: method missing
client.subscribe("node-b", "metrics/#", (ev) => ev.data.toFixed()); // error 2: data is unknown
client.on("conect", () => {});                                   // error 3: no such event
client.register("echo", "say", async () => 1, { mutates: "no" });   // error 4: mutates is a boolean
