"""Editing a step's params before approval, checked against the method's schema.

A ``ModalScreen`` that returns the new params through ``dismiss`` (None:
cancelled).  ``validate`` is the screen-independent check (the main screen
passes the tools layer's own validation against the live node), so what this
editor accepts is exactly what the planner would have accepted.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from .._state import fmt_params
from ..widgets.footer import ConsoleFooter

Validate = Callable[[dict[str, Any]], Awaitable["str | None"]]


def schema_summary(schema: dict[str, Any] | None) -> str:
    """``name: string, required — the process name …`` one line per param."""
    if not schema:
        return "(the node published no schema for this method)"
    props = schema.get("properties") or {}
    if not props:
        return "(takes no params)"
    required = set(schema.get("required") or [])
    lines = []
    for name, p in props.items():
        kind = p.get("type") or " | ".join(str(x.get("type")) for x in p.get("anyOf", []) if isinstance(x, dict)) or "any"
        bits = [str(kind)]
        if "minimum" in p or "maximum" in p:
            bits.append(f"{p.get('minimum', '')}..{p.get('maximum', '')}")
        if "enum" in p:
            bits.append("one of " + ", ".join(map(str, p["enum"])))
        bits.append("required" if name in required else f"default {json.dumps(p.get('default'))}")
        desc = f" — {p['description']}" if p.get("description") else ""
        lines.append(f"{name}: {', '.join(bits)}{desc}")
    if schema.get("additionalProperties") is False:
        lines.append("(no other params)")
    return "\n".join(lines)


class EditParamsScreen(ModalScreen["dict[str, Any] | None"]):
    BINDINGS = [Binding("enter", "check", "Check & keep"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, step: Any, schema: dict[str, Any] | None, validate: Validate) -> None:
        super().__init__()
        self.step = step
        self.schema = schema
        self.validate = validate

    def compose(self) -> ComposeResult:
        s = self.step
        with Vertical(id="edit-box"):
            yield Static(Text.assemble(("Edit step ", "bold"), (str(s.index), "bold"), ": ",
                                       f"{s.service}.{s.method} on {', '.join(s.targets)}"), id="edit-title")
            yield Static(schema_summary(self.schema), id="edit-schema")
            yield Input(value=fmt_params(s.params), id="params-input")
            yield Static("", id="edit-error")
            yield Static("Enter: check against the schema and keep · Esc: cancel (the plan stays as it was)",
                         id="edit-hint")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#edit-box").border_title = "Edit params"
        self.query_one("#params-input", Input).focus()

    def error(self, text: str) -> None:
        self.query_one("#edit-error", Static).update(Text(text, style="bold red"))

    @on(Input.Submitted, "#params-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            params = json.loads(event.value or "{}")
        except json.JSONDecodeError as e:
            self.error(f"not valid JSON: {e.msg} (column {e.colno})")
            return
        if not isinstance(params, dict):
            self.error("params must be a JSON object, e.g. {\"name\": \"logger\"}")
            return
        self.query_one("#edit-error", Static).update(Text("checking against the node's schema…", style="dim"))
        self._check(params)

    @work(exclusive=True, group="edit-check", exit_on_error=False)
    async def _check(self, params: dict[str, Any]) -> None:
        try:
            problem = await self.validate(params)
        except Exception as e:  # noqa: BLE001 - shown, the edit is not kept
            problem = f"could not check the params: {e}"
        if problem:
            self.error(problem)
        else:
            self.dismiss(params)

    def action_check(self) -> None:
        inp = self.query_one("#params-input", Input)
        inp.post_message(Input.Submitted(inp, inp.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
