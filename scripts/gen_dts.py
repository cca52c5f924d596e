"""Generate the frame types of clients/js/cloudisense.d.ts from the protocol's JSON Schemas.

The schemas come from the pydantic models of node/_frames.py (``frame_schemas()``, the same ones
docs/protocol.md embeds) and the error codes from node/_errors.py.  The generated block sits between
the BEGIN/END markers of cloudisense.d.ts; the declarations of the library's API around it are
written by hand.  tests/unit/test_js_types.py fails when the block differs from this output.

    python scripts/gen_dts.py            # print the generated block
    python scripts/gen_dts.py --write    # replace the block in clients/js/cloudisense.d.ts
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cloudisense.node._errors import ErrorCode
from cloudisense.node._frames import frame_schemas

DTS = Path(__file__).resolve().parents[1] / "clients" / "js" / "cloudisense.d.ts"
BEGIN = "// BEGIN GENERATED FRAME TYPES (python scripts/gen_dts.py --write)"
END = "// END GENERATED FRAME TYPES"


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of one JSON Schema (the subset pydantic emits for the frames)."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(dict.fromkeys(ts_type(s) for s in schema["anyOf"]))
    t = schema.get("type")
    if t == "string":
        return "string"
    if t in ("integer", "number"):
        return "number"
    if t == "boolean":
        return "boolean"
    if t == "null":
        return "null"
    if t == "array":
        return f"Array<{ts_type(schema.get('items', {}))}>"
    if t == "object":
        if "properties" in schema:
            return "{ " + " ".join(_fields(schema, always=())) + " }"
        extra = schema.get("additionalProperties")
        return f"Record<string, {ts_type(extra) if isinstance(extra, dict) else 'unknown'}>"
    return "unknown"


def _fields(schema: dict[str, Any], always: tuple[str, ...]) -> list[str]:
    required = set(schema.get("required", ())) | set(always)
    out = []
    for name, prop in schema.get("properties", {}).items():
        opt = "" if name in required else "?"
        out.append(f"{name}{opt}: {ts_type(prop)};")
    return out


def _interface(name: str, schema: dict[str, Any], always: tuple[str, ...] = ("type",)) -> list[str]:
    out = []
    if desc := schema.get("description"):
        out.append(f"/** {' '.join(str(desc).split())} */")
    out.append(f"export interface {name} {{")
    for prop_name, prop in schema.get("properties", {}).items():
        if d := prop.get("description"):
            out.append(f"  /** {' '.join(str(d).split())} */")
        opt = "" if prop_name in set(schema.get("required", ())) | set(always) else "?"
        out.append(f"  {prop_name}{opt}: {ts_type(prop)};")
    out.append("}")
    return out


def frame_name(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_")) + "Frame"


def render() -> str:
    schemas = frame_schemas()
    out = [BEGIN, "// The wire frames of protocol v1 (docs/protocol.md), from node/_frames.py's JSON Schemas.", "",
           "/** The closed set of error codes a node answers (docs/protocol.md, \"Error codes\"). */",
           "export type ErrorCode =", *[f"  | {json.dumps(str(c))}" for c in ErrorCode], ";", ""]
    defs: dict[str, Any] = {}
    for side in ("client_to_node", "node_to_client"):
        for schema in schemas[side].values():
            defs.update(schema.get("$defs", {}))
    for name, schema in sorted(defs.items()):
        out += _interface(name, schema, always=()) + [""]
    for side, union, title in (("client_to_node", "ClientFrame", "Client → node"),
                               ("node_to_client", "NodeFrame", "Node → client")):
        out.append(f"// {title}")
        for kind, schema in schemas[side].items():
            out += _interface(frame_name(kind), schema) + [""]
        out += [f"export type {union} =", *[f"  | {frame_name(k)}" for k in schemas[side]], ";", ""]
    out.append(END)
    return "\n".join(out)


def extract(text: str) -> str:
    return text[text.index(BEGIN):text.index(END) + len(END)]


def main(argv: list[str]) -> int:
    block = render()
    if argv[1:] == ["--write"]:
        text = DTS.read_text()
        DTS.write_text(text.replace(extract(text), block))
        print(f"wrote {DTS}")
    elif argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
