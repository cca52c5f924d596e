"""LLM tool schemas generated from pydantic models, valid for OpenAI strict mode.

Strict mode (``"strict": true`` on a function tool) accepts a subset of JSON
Schema: the root is an object; every object lists *all* its properties in
``required`` and sets ``additionalProperties: false``; optional values are
expressed as ``anyOf [..., {"type": "null"}]``; no ``default`` and none of the
keywords OpenAI documents as unsupported.  :func:`strict_schema` turns a
pydantic model's schema into that form (refs inlined, titles and defaults
dropped); :func:`strict_problems` checks a schema against those rules, and
tests run it on every tool.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# Dropped: no meaning for the model, or not accepted by strict mode.
_DROP = {"title", "default", "examples", "minLength", "maxLength", "pattern", "format",
         "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
         "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
         "patternProperties", "propertyNames", "unevaluatedProperties", "contains",
         "discriminator", "const"}
_FORBIDDEN = _DROP - {"const"} | {"$ref", "$defs", "definitions", "allOf", "oneOf", "not", "if", "then", "else"}


def _inline(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise ValueError("schema too deep (recursive model?)")
    if isinstance(node, list):
        return [_inline(x, defs, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("$defs", "definitions"):
            continue
        if k == "properties":
            out[k] = {name: _inline(sub, defs, depth + 1) for name, sub in v.items()}
        else:
            out[k] = _inline(v, defs, depth + 1)
    return out


def _strictify(node: Any) -> Any:
    if isinstance(node, list):
        return [_strictify(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in _DROP and not (k == "const"):
            continue
        if k == "properties":
            out[k] = {name: _strictify(sub) for name, sub in v.items()}
        else:
            out[k] = _strictify(v)
    if "const" in out:  # Literal with one value: an enum of one
        out["enum"] = [out.pop("const")]
    if "allOf" in out and len(out["allOf"]) == 1:  # pydantic wraps described refs in allOf
        inner = out.pop("allOf")[0]
        out = {**inner, **out}
    if out.get("type") == "object" or "properties" in out:
        if "properties" not in out or out.get("additionalProperties", False) is not False:
            raise ValueError("a free-form object (dict) can't be expressed in strict mode; "
                             "use a model with fixed fields, or a JSON text field")
        out["type"] = "object"
        props = out.setdefault("properties", {})
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict-mode JSON schema of a pydantic model (ValueError if it has a free-form dict field)."""
    raw = model.model_json_schema()
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _strictify(_inline(raw, defs))
    schema.pop("description", None)  # the tool's own description says it
    return schema


def strict_problems(schema: Any, path: str = "$") -> list[str]:
    """Reasons a schema is not valid for strict mode (empty list: valid)."""
    problems: list[str] = []
    if path == "$" and (not isinstance(schema, dict) or schema.get("type") != "object"):
        return ["$: the root must be an object schema"]
    if isinstance(schema, list):
        for i, x in enumerate(schema):
            problems += strict_problems(x, f"{path}[{i}]")
        return problems
    if not isinstance(schema, dict):
        return problems
    for k in schema:
        if k in _FORBIDDEN:
            problems.append(f"{path}: keyword {k!r} is not allowed")
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(props):
            problems.append(f"{path}: every property must be required")
        for name, sub in props.items():
            problems += strict_problems(sub, f"{path}.{name}")
    for k in ("anyOf", "items"):
        if k in schema:
            problems += strict_problems(schema[k], f"{path}.{k}")
    if "type" not in schema and "anyOf" not in schema and "enum" not in schema:
        problems.append(f"{path}: no type")
    return problems


def openai_tool(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    """A function tool in the OpenAI chat-completions ``tools`` format, strict mode."""
    if not TOOL_NAME_RE.match(name):
        raise ValueError(f"invalid tool name {name!r}")
    return {"type": "function",
            "function": {"name": name, "description": description,
                         "parameters": strict_schema(model), "strict": True}}
