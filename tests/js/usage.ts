// A usage example type-checked against clients/js/cloudisense.d.ts (tests/unit/test_js_types.py runs
// `tsc --noEmit` on it, and once more on a copy with deliberate mistakes, which must fail).
import { connect, RpcError, topicMatches, type CloudEvent, type WelcomeFrame, type ErrorCode } from "cloudisense";

interface Metrics { cpu_percent: number; temperature_c?: number }

export async function main(url: string): Promise<number> {
  const client = connect(url, { token: () => sessionStorage.getItem("token"), name: "usage", timeout: 5 });
  const offConnect = client.on("connect", (w: WelcomeFrame) => console.log(w.node, w.role));
  client.on("disconnect", ({ code, reason }) => console.log(code, reason.length));
  client.on("error", (err) => console.warn(err.code, err.detail));

  const info = await client.call<{ hostname: string }>("node-b", "system", "info", {}, { timeout: 3 });
  console.log(info.hostname.toUpperCase());
  const all = await client.broadcast("node", "ping");
  for (const [node, e] of Object.entries(all.errors)) console.log(node, e.code, e.message);

  const unsubscribe = await client.subscribe<Metrics>("node-b", "metrics/#", (ev: CloudEvent<Metrics>) => {
    console.log(ev.node, ev.topic, ev.ts.toFixed(0), ev.data.cpu_percent.toFixed(1));
  });
  await unsubscribe();
  await client.publish("alerts/door", { open: true });

  const withdraw = await client.register<{ text: string }, { said: string }>("echo", "say",
    async (params, { caller }) => {
      if (!params.text) throw new RpcError("invalid_params", "text is empty");
      return { said: `${params.text} (${caller.node})` };
    }, { params: { type: "object" }, mutates: false, description: "say it back" });
  await withdraw();

  const code: ErrorCode = "unknown_service";
  try {
    await client.call(null, "nope", "x");
  } catch (e) {
    if (e instanceof RpcError && e.code === code) console.log("as expected");
  }
  offConnect();
  client.close();
  return client.subscriptions().length + (topicMatches("a/#", "a/b") ? 1 : 0);
}
