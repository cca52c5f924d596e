"""Generate the schema sections of docs/protocol.md from the pydantic models.

``python -m cloudisense.node._docs`` prints the generated block; a test fails
when the block in docs/protocol.md differs from it.
"""

from __future__ import annotations

import json

from ._errors import ErrorCode
from ._frames import envelope_schema, frame_schemas

BEGIN = "<!-- BEGIN GENERATED SCHEMAS (python -m cloudisense.node._docs) -->"
END = "<!-- END GENERATED SCHEMAS -->"

_CODE_TEXT = {
    ErrorCode.BAD_REQUEST: "malformed JSON, unknown frame type, missing or wrong field (named in the message)",
    ErrorCode.TOO_LARGE: "frame over `ws.max_frame_bytes` (frames over 4× that close the socket with 1009), or a "
                         "reply over the caller's limit (`node.cluster` `max_bytes`: ask for a page)",
    ErrorCode.UNAUTHENTICATED: "auth is on and no valid `hello` came first, or the token is wrong",
    ErrorCode.FORBIDDEN: "the role may not do this (a viewer calling a mutating method or publishing)",
    ErrorCode.UNKNOWN_NODE: "no node with this id has been seen",
    ErrorCode.NODE_OFFLINE: "the node is known but offline, went away mid-call, or this node lost the broker",
    ErrorCode.UNKNOWN_SERVICE: "the target node has no such service",
    ErrorCode.UNKNOWN_METHOD: "the service has no such method",
    ErrorCode.INVALID_PARAMS: "params fail the method's schema (the field is named)",
    ErrorCode.TIMEOUT: "no answer before the call's deadline (exactly one such error per call)",
    ErrorCode.OVERLOADED: "rate limit, pending-call limit or subscription limit of the client reached",
    ErrorCode.CONFLICT: "`register`: the `service.method` is held by a service of the node or by another client",
    ErrorCode.INTERNAL: "a bug on the answering node; logged there with its traceback, never sent",
}


def render() -> str:
    out = [BEGIN, "", "### Error codes", "", "| code | meaning |", "|---|---|"]
    out += [f"| `{c}` | {_CODE_TEXT[c]} |" for c in ErrorCode]
    schemas = frame_schemas()
    for side, title in (("client_to_node", "Client → node frames"), ("node_to_client", "Node → client frames")):
        out += ["", f"### {title}", ""]
        for name, schema in schemas[side].items():
            out += [f"#### `{name}`", "", "```json", json.dumps(schema, indent=2, sort_keys=True), "```", ""]
    out += ["### Federation envelope", "", "```json", json.dumps(envelope_schema(), indent=2, sort_keys=True),
            "```", "", END]
    return "\n".join(out)


def extract(doc: str) -> str:
    start = doc.index(BEGIN)
    end = doc.index(END) + len(END)
    return doc[start:end]


if __name__ == "__main__":
    print(render())
