"""The main screen: cluster table, request box, plan / execution, events and RPC activity.

Everything that waits on the network runs in a worker (``@work``) so the
screen keeps taking keys while a plan is made, a slow step runs or a node
disappears: ``plan`` (one request at a time, a new one replaces it),
``execute``, ``edit`` (reads the method schema, then the editor) and
``watch`` (the events pane's subscription, re-made after a reconnect).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Static, TabbedContent, TabPane

from cloudisense.node._text import printable

from .._messages import (ExecutionFinished, LinkChanged, ModelProgress, PlanEdited, PlanReady, PlanRejected,
                         StatsArrived, StepUpdate)
from .._state import fmt_params
from ..widgets import AskInput, ClusterTable, EventsPane, PlanView, RpcLine, RpcPanel, TopBar
from ..widgets.events_pane import FilterInput
from ..widgets.history_pane import HistoryPane, HistoryTable
from ..widgets.pending_pane import PendingPane, PendingTable
from ..widgets.plan_view import PlanTable
from ..widgets.footer import ConsoleFooter
from .dialogs import ConfirmScreen, FeedbackScreen
from .edit_params import EditParamsScreen

if TYPE_CHECKING:
    from ..app import CloudisenseApp

TABS = ("tab-plan", "tab-events", "tab-rpc", "tab-pending", "tab-history")
# Approving these (or any step on more than one node) asks again, naming the nodes.
CONFIRM_METHODS = frozenset({"stop"})


def help_sections(app_class: type[Any]) -> list[tuple[str, Any]]:
    """(section, class with BINDINGS) for the help screen, in the order the screen shows them; ``app_class``
    (the app's, whose bindings work everywhere) is passed in by the app, which imports this module."""
    from ..widgets.events_pane import EventLog
    from ..widgets.plan_log import PlanLog
    from .logs import LogsScreen, LogView
    from .node_detail import NodeDetailScreen, ProcessTable

    return [("Everywhere", app_class), ("Main screen", MainScreen), ("Ask box", AskInput),
            ("Cluster table", ClusterTable), ("Plan", PlanTable), ("Plan log", PlanLog),
            ("Edit params", EditParamsScreen), ("Event list", EventLog), ("Node detail", NodeDetailScreen),
            ("Processes", ProcessTable), ("Logs", LogsScreen), ("Log lines", LogView), ("History", HistoryTable)]


class MainScreen(Screen[None]):
    AUTO_FOCUS = "#request"
    BINDINGS = [
        Binding("f2", "next_tab", "Next tab"),
        # Synchronous on purpose: Escape-then-key (see CloudisenseApp.on_event) types the key where this
        # put the focus.
        Binding("escape", "focus_request", "Ask box"),
    ]

    app: CloudisenseApp

    def __init__(self) -> None:
        super().__init__()
        self.executing = False
        self.editing = False
        self.asking = False  # a feedback or confirmation dialog is open
        self.last_request = ""
        self.watching: tuple[str | None, str] | None = None

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        app = self.app
        bar = TopBar(id="topbar")
        bar.model = app.model_label
        bar.url = app.url
        yield bar
        with Vertical(id="cluster-box"):
            yield FilterInput(placeholder="filter nodes (Enter keeps, Esc clears)", id="cluster-filter",
                              compact=True)
            yield ClusterTable(app.cluster, app.clock, id="cluster")
        yield RpcLine("RPC  waiting for $sys/stats…", id="rpc-line")
        with Horizontal(id="request-row"):
            yield Static("Ask ›", id="request-label")
            yield AskInput(app.history, self._names, id="request", compact=True)
        with TabbedContent(id="tabs", initial="tab-plan"):
            with TabPane("Plan", id="tab-plan"):
                yield PlanView(clock=app.monotonic, id="plan")
            with TabPane("Events", id="tab-events"):
                yield EventsPane(id="events")
            with TabPane("RPC", id="tab-rpc"):
                yield RpcPanel(id="rpc")
            with TabPane("Pending", id="tab-pending"):
                yield PendingPane(id="pending")
            with TabPane("History", id="tab-history"):
                yield HistoryPane(id="history")
        yield ConsoleFooter()

    @property
    def plan_view(self) -> PlanView:
        return self.query_one(PlanView)

    @property
    def request_box(self) -> AskInput:
        return self.query_one("#request", AskInput)

    def _names(self) -> tuple[list[str], list[str]]:
        """Node ids and process names of the live cluster (for Tab completion)."""
        rows = self.app.cluster.rows()
        return [r.id for r in rows], sorted({str(p.get("name")) for r in rows for p in r.processes if p.get("name")})

    @property
    def events(self) -> EventsPane:
        return self.query_one(EventsPane)

    def on_mount(self) -> None:
        self.request_box.focus()

    # ---- the link and the node's stats ------------------------------------------------------

    @on(LinkChanged)
    def _link_changed(self, msg: LinkChanged) -> None:
        bar = self.query_one(TopBar)
        bar.conn = msg.state
        bar.detail = msg.detail
        if msg.node:
            bar.node = msg.node
        box = self.query_one("#cluster-box")
        box.border_subtitle = "" if msg.state == "connected" else "not live: waiting for the node"
        box.set_class(msg.state != "connected", "-stale")
        if msg.state == "failed":
            self.plan_view.note(("cannot connect ", "bold red"), f"to {self.app.url}: {msg.detail} "
                                                               "(not retried; fix the URL or token and restart)")

    @on(StatsArrived)
    def _stats(self, msg: StatsArrived) -> None:
        self.query_one(RpcLine).show(msg.stats)
        self.query_one(RpcPanel).show(msg.stats)

    # ---- keys -------------------------------------------------------------------------------

    def action_next_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + 1) % len(TABS)]
        # Focus follows the tab (a focused widget in a hidden pane would pull its tab back).
        if tabs.active == "tab-events":
            self.query_one("#watch-input", Input).focus()
        elif tabs.active == "tab-pending":
            self.query_one(PendingTable).focus()
        elif tabs.active == "tab-history":
            self.query_one(HistoryTable).focus()
        elif tabs.active == "tab-plan" and self.plan_view.plan is not None:
            self.plan_view.table.focus()
        else:
            self.request_box.focus()

    def action_focus_request(self) -> None:
        self.set_focus(self.request_box)  # now, not after a refresh (Widget.focus defers)

    @on(PlanView.Back)
    def _back(self, msg: PlanView.Back) -> None:
        self.request_box.focus()

    def go_to_node(self, node: str) -> None:
        table = self.query_one(ClusterTable)
        try:
            row = table.get_row_index(node)
        except Exception:  # noqa: BLE001 - the node left the table meanwhile
            self.notify(f"{node} is not in the cluster table", severity="warning")
            return
        table.move_cursor(row=row)
        table.focus()

    def watch_topic(self, node: str | None, topic: str) -> None:
        self.query_one(TabbedContent).active = "tab-events"
        self.events.prefill(node or ".", topic)
        self.events.log_view.focus()
        self.events.post_message(EventsPane.Watch(node, topic))

    @on(ClusterTable.NodeChosen)
    def _node_chosen(self, msg: ClusterTable.NodeChosen) -> None:
        # Node and topic together, and subscribed at once: the box and the status line agree.
        self.watch_topic(msg.node, "process/#")

    # ---- past plans (the audit log) -------------------------------------------------------------

    @on(TabbedContent.TabActivated, "#tabs", pane="#tab-history")
    def _history_shown(self) -> None:
        self.query_one(HistoryPane).reload()

    @on(HistoryPane.Open)
    def _open_past(self, msg: HistoryPane.Open) -> None:
        from .past_plan import PastPlanScreen

        plan = self.query_one(HistoryPane).plans.get(msg.plan_hash)
        if plan is not None:
            self.app.push_screen(PastPlanScreen(plan))

    # ---- pending plans (filed through MCP) ----------------------------------------------------

    def open_pending(self, plan_id: str) -> None:
        self.query_one(TabbedContent).active = "tab-pending"
        pane = self.query_one(PendingPane)
        pane.reload()
        t = pane.query_one(PendingTable)
        try:
            t.move_cursor(row=t.get_row_index(plan_id))
        except Exception:  # noqa: BLE001 - decided elsewhere meanwhile
            self.notify(f"plan {plan_id} is no longer pending", severity="warning", markup=False)
        t.focus()

    @on(PendingPane.Decide)
    def _pending_decide(self, msg: PendingPane.Decide) -> None:
        from cloudisense.agent.pending import PendingError

        app = self.app
        try:
            rec = app.pending_store.get(msg.plan_id)
        except PendingError as e:
            self.notify(str(e), severity="warning", markup=False)
            return
        if self.asking:
            return
        self.asking = True
        nodes = sorted({t for s in rec.plan.steps for t in s.targets})
        if msg.what == "reject":
            def rejected(feedback: str | None) -> None:
                self.asking = False
                if feedback is None:
                    return
                try:
                    app.pending_store.reject(rec.id, by=app.agent.user, feedback=feedback, via="tui")
                except PendingError as e:
                    self.notify(str(e), severity="warning", markup=False)
                self.query_one(PendingPane).reload()
                self.notify(f"pending plan {rec.id} rejected: nothing ran", markup=False)

            app.push_screen(FeedbackScreen(rec.plan.hash), rejected)
            return
        lines = [f"step {s.index}: {s.service}.{s.method} {fmt_params(s.params)} on {', '.join(s.targets)}"
                 for s in rec.plan.steps] + [f"filed by {rec.requested_by or '?'} via MCP: {rec.plan.request}"]
        title = f"Run pending plan {rec.id} on {len(nodes)} node{'s' if len(nodes) != 1 else ''}: {', '.join(nodes)}?"

        def confirmed(yes: bool | None) -> None:
            self.asking = False
            if yes:
                self.run_pending(rec.id, rec.plan.hash)

        app.push_screen(ConfirmScreen(title, lines), confirmed)

    @work(group="pending", exit_on_error=False)
    async def run_pending(self, plan_id: str, plan_hash: str) -> None:
        from cloudisense.agent.pending import PendingError, execute_pending

        app = self.app
        self.query_one(TabbedContent).active = "tab-plan"
        self.plan_view.begin(f"pending plan {plan_id} (MCP)")
        self.plan_view.note(("approved: ", "bold green"), f"pending plan {plan_id} by {app.agent.user}, running …")
        try:
            rec = await execute_pending(app.pending_store, plan_id, app.conn, via="tui", expect_hash=plan_hash,
                                        timeout=app.call_timeout)
        except PendingError as e:
            self.plan_view.note(("not executed: ", "bold red"), printable(str(e), limit=300))
            return
        except Exception as e:  # noqa: BLE001 - shown; the store and the audit say what happened
            self.plan_view.note(("failed: ", "bold red"), printable(f"{type(e).__name__}: {e}", limit=300))
            return
        finally:
            self.query_one(PendingPane).reload()
        report = rec.report
        for r in (report.results if report else []):
            d = r.model_dump(mode="json")
            if d.get("ok") and isinstance(d.get("result"), dict) and d.get("service") == "supervisor":
                app.cluster.patch_process(d["node"], d["result"])
            self._note_step(d)
        ok = report is not None and report.status == "done"
        self.plan_view.note((f"{report.status if report else rec.status}: ", "bold green" if ok else "bold red"),
                            printable(report.message if report else rec.message, limit=400))
        self.plan_view.note(("audit: ", "bold"), printable(f"{rec.audit or 'default audit log'} (session {rec.session})",
                                                            limit=300))
        self.post_message(ExecutionFinished(rec.plan.hash, report, "" if ok else rec.message))

    @on(ClusterTable.DetailRequested)
    def _detail(self, msg: ClusterTable.DetailRequested) -> None:
        self.app.go_to_node(msg.node)

    @on(ClusterTable.LogsRequested)
    def _logs(self, msg: ClusterTable.LogsRequested) -> None:
        self.app.follow_logs(msg.node)

    @on(ClusterTable.FilterRequested)
    def _cluster_filter(self, msg: ClusterTable.FilterRequested) -> None:
        self.query_one("#cluster-filter", FilterInput).open()

    @on(Input.Changed, "#cluster-filter")
    def _cluster_filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one(ClusterTable).set_filter(event.value)

    @on(Input.Submitted, "#cluster-filter")
    def _cluster_filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(ClusterTable).focus()

    # ---- request → plan ---------------------------------------------------------------------

    def ask(self, request: str) -> None:
        """A request from elsewhere (the node detail view): shown in the Ask box and planned."""
        box = self.request_box
        box.value = request
        box.post_message(Input.Submitted(box, request))

    @on(Input.Submitted, "#request")
    def _request(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if self.executing:
            self.notify("A plan is running; wait for it to finish.", severity="warning")
            return
        pv = self.plan_view
        superseded = pv.plan.hash[:12] if pv.awaiting_approval and pv.plan is not None else ""
        if superseded:
            self.app.agent.reject(pv.plan, "superseded by a new request", via="tui")
            self.notify(f"Plan {superseded} superseded by the new request: nothing of it ran.",
                        severity="warning", timeout=5)
        self.request_box.remember(text)
        self.request_box.value = ""
        self.query_one(TabbedContent).active = "tab-plan"
        pv.clear_plan(printable(f"Planning: {text} …", limit=200))
        pv.begin(f"> {text}")
        if superseded:  # said in the new block: the old one folds away
            pv.note(("superseded: ", "bold yellow"), f"plan {superseded} was waiting for approval and is dropped "
                                                     "(nothing ran; audit: rejection, superseded)")
        self.run_plan(text)

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def run_plan(self, request: str, feedback: str | None = None) -> None:
        """Plan ``request``, or with ``feedback`` revise the rejected plan of it (as ``cloudisense ask`` does)."""
        from cloudisense.agent._model import PROGRESS

        pv = self.plan_view
        streamed: list[str] = []

        def progress(kind: str, text: str) -> None:
            # the model's words as they arrive (``--stream``), and the planner's progress lines: shown in the
            # plan's title while it is being made, escaped (they come from the model)
            self.post_message(ModelProgress(kind, text))
            if kind == "text":
                streamed.append(text)
                said = "".join(streamed)
                pv.clear_plan(printable(f"Planning: {request} … the model says: {said[-240:]}", limit=400))
            else:
                pv.clear_plan(printable(f"Planning: {request} … {text}", limit=300))

        token = PROGRESS.set(progress)   # this worker's task only
        try:
            result = await (self.app.agent.revise(feedback) if feedback else self.app.agent.plan(request))
        except Exception as e:  # noqa: BLE001 - a crash in planning is shown, never executed
            pv.clear_plan(printable(f"Planning failed: {type(e).__name__}: {e}", limit=300))
            return
        finally:
            PROGRESS.reset(token)
        self.post_message(PlanReady(request, result))
        if not result.ok or result.plan is None:
            pv.clear_plan("Planning failed: nothing was executed.")
            pv.note((printable(result.message or result.error or "planning failed", keep_newlines=True), "red"))
            return
        plan = result.plan
        if not plan.steps:
            answered = any(getattr(o, "status", "") == "ok" for o in result.observations)
            pv.clear_plan("Answer (read-only, nothing to approve):" if answered
                          else "Not planned: nothing was run.")
            pv.note((printable(result.message or plan.summary or "(no answer)", keep_newlines=True),
                     "" if answered else "yellow"))
            return
        pv.show_plan(plan)
        self.last_request = request
        if feedback:
            pv.note(("revised ", "bold"), f"from your feedback {feedback!r}: plan {plan.hash[:12]}")
        if result.message:
            pv.note((printable(result.message, keep_newlines=True), "dim"))
        self.query_one(TabbedContent).active = "tab-plan"
        pv.table.focus()

    # ---- reject -----------------------------------------------------------------------------

    @on(PlanView.Reject)
    def _reject(self, msg: PlanView.Reject) -> None:
        pv = self.plan_view
        if not pv.awaiting_approval or pv.plan is None or self.asking:
            return
        self.asking = True
        plan = pv.plan

        def decided(feedback: str | None) -> None:
            self.asking = False
            if feedback is None:  # cancelled: the plan still waits
                pv.table.focus()
                return
            if pv.plan is not plan or not pv.awaiting_approval:
                return
            self.app.agent.reject(plan, feedback, via="tui")
            self.post_message(PlanRejected(plan.hash))
            if not feedback:
                pv.clear_plan(f"Rejected plan {plan.hash[:12]}: nothing was executed.")
                pv.note(("rejected: ", "bold yellow"), f"plan {plan.hash[:12]}, nothing executed (audit: rejection)")
                self.set_focus(self.request_box)
                return
            pv.clear_plan(f"Rejected plan {plan.hash[:12]}; revising it from your feedback …")
            pv.note(("rejected: ", "bold yellow"), f"plan {plan.hash[:12]} with feedback ",
                    (printable(feedback, limit=300), "italic"), "; revising")
            self.run_plan(self.last_request, feedback)

        self.app.push_screen(FeedbackScreen(plan.hash), decided)

    # ---- approve → execute ------------------------------------------------------------------

    @on(PlanView.Approve)
    def _approve(self, msg: PlanView.Approve) -> None:
        pv = self.plan_view
        if not pv.awaiting_approval or pv.plan is None or self.executing:
            return
        if not msg.steps:
            self.notify("No step is checked: toggle one with space, or reject with r.", severity="warning")
            return
        plan, steps = pv.plan, list(msg.steps)
        risky = [plan.step(i) for i in steps if len(plan.step(i).targets) > 1 or plan.step(i).method in CONFIRM_METHODS]
        if not risky:
            self.executing = True
            self.run_execute(plan, steps)
            return
        if self.asking:
            return
        self.asking = True
        lines = [f"step {s.index}: {s.service}.{s.method} {fmt_params(s.params)} on {len(s.targets)} "
                 f"node{'s' if len(s.targets) != 1 else ''}: {', '.join(s.targets)}" for s in risky]
        nodes = sorted({t for s in risky for t in s.targets})
        title = (f"Run on {len(nodes)} node{'s' if len(nodes) != 1 else ''}: {', '.join(nodes)}?")

        def confirmed(yes: bool | None) -> None:
            self.asking = False
            pv.table.focus()
            if not yes:
                pv.note(("not confirmed: ", "bold yellow"), "nothing ran; the plan still waits")
                return
            if pv.plan is plan and pv.awaiting_approval and not self.executing:
                self.executing = True
                self.run_execute(plan, steps)

        self.app.push_screen(ConfirmScreen(title, lines), confirmed)

    @work(exclusive=True, group="execute", exit_on_error=False)
    async def run_execute(self, plan: Any, steps: list[int]) -> None:
        from cloudisense.agent import NotApproved

        app, pv = self.app, self.plan_view
        progress = pv.progress
        assert progress is not None
        report = None
        error = ""
        try:
            approval = app.agent.approve(plan, steps, via="tui")
            progress.start(approval.steps)
            pv.refresh_steps()
            pv.note(("approved: ", "bold green"),
                    f"step(s) {', '.join(map(str, approval.steps))} of plan {plan.hash[:12]} by {approval.approver}")

            def on_call(node: str | None, service: str, method: str, params: dict[str, Any]) -> None:
                if service != "node" and node:
                    progress.on_call(node, app.monotonic())
                    pv.refresh_steps()

            def on_step(data: dict[str, Any]) -> None:
                err = data.get("error") or {}
                progress.on_result(int(data["step"]), bool(data.get("ok")), data.get("seconds"),
                                   f"{err.get('code', '?')}: {err.get('message', '')}" if err else "")
                if data.get("ok") and isinstance(data.get("result"), dict) and data["service"] == "supervisor":
                    app.cluster.patch_process(data["node"], data["result"])
                pv.refresh_steps()
                self._note_step(data)
                self.post_message(StepUpdate(data))

            app.conn.observers.append(on_call)
            app.step_listeners.append(on_step)
            try:
                report = await app.agent.execute(plan, approval)
            finally:
                app.conn.observers.remove(on_call)
                app.step_listeners.remove(on_step)
        except NotApproved as e:
            error = f"refused: {e}"
        except Exception as e:  # noqa: BLE001 - shown; the audit has what happened
            error = f"{type(e).__name__}: {e}"
        finally:
            self.executing = False
            progress.finish()
            pv.refresh_steps()
        if report is not None:
            ok = report.status == "done"
            pv.note((f"{report.status}: ", "bold green" if ok else "bold red"), report.message)
            if report.skipped:
                pv.note(("not approved, not run: ", "dim"), f"step(s) {', '.join(map(str, report.skipped))}")
        else:
            pv.note(("not executed: ", "bold red"), error)
        self._note_audit(plan.hash)
        self.post_message(ExecutionFinished(plan.hash, report, error))

    def _note_step(self, data: dict[str, Any]) -> None:
        pv = self.plan_view
        head = f"step {data['step']} {data['node']} {data['service']}.{data['method']} "
        if data.get("ok"):
            body = json.dumps(data.get("result"), ensure_ascii=False, default=str)
            pv.note((head, "bold"), ("ok ", "green"), f"{data.get('seconds', 0):.2f}s ",
                    (body[:200] + ("…" if len(body) > 200 else ""), "dim"))
        else:
            err = data.get("error") or {}
            pv.note((head, "bold"), ("error ", "red"), f"{err.get('code')}: {err.get('message')}")

    def _note_audit(self, plan_hash: str) -> None:
        audit = self.app.agent.audit
        if audit is None:
            self.plan_view.note(("audit: ", "dim"), "no audit log configured")
            return
        recs = [r for r in self.app.audit_tail(8) if r.get("plan_hash") == plan_hash]
        if not recs:
            self.plan_view.note(("audit: ", "bold red"), f"no record for this plan in {audit.path}")
            return
        r = recs[-1]
        extra = f", status {r['status']}" if "status" in r else ""
        self.plan_view.note(("audit: ", "bold"), f"{r['event']} of plan {plan_hash[:12]}{extra} by {r.get('user')} "
                                                 f"(session {r.get('session')}) → {audit.path}")

    # ---- edit a step's params ---------------------------------------------------------------

    @on(PlanView.Edit)
    def _edit(self, msg: PlanView.Edit) -> None:
        if self.plan_view.awaiting_approval and not self.editing:
            self.editing = True
            self.run_edit(msg.index)

    @work(exclusive=True, group="edit", exit_on_error=False)
    async def run_edit(self, index: int) -> None:
        try:
            await self._edit_step(index)
        finally:
            self.editing = False

    async def _edit_step(self, index: int) -> None:
        from cloudisense.tools import CallArgs, ToolError, Toolbox

        app, pv = self.app, self.plan_view
        plan = pv.plan
        step = plan.step(index)
        schema = None
        try:
            desc = await Toolbox(app.conn, timeout=app.call_timeout).describe(step.targets[0])
            schema = desc.get("services", {}).get(step.service, {}).get("methods", {}).get(step.method, {}).get("params")
        except ToolError as e:
            pv.note(("edit: ", "bold red"), f"could not read the schema of {step.service}.{step.method}: {e.message}")

        async def validate(params: dict[str, Any]) -> str | None:
            tb = Toolbox(app.conn, timeout=app.call_timeout)
            for target in step.targets:
                try:
                    await tb.prepare(CallArgs(node=target, service=step.service, method=step.method,
                                              params_json=json.dumps(params), reason=step.reason))
                except ToolError as e:
                    return f"{e.code}: {e.message}"
            return None

        params = await app.push_screen_wait(EditParamsScreen(step, schema, validate))
        pv.table.focus()
        if params is None or params == step.params:
            pv.note(("edit: ", "dim"), f"step {index} unchanged")
            return
        if pv.plan is not plan or not pv.awaiting_approval:
            pv.note(("edit: ", "bold red"), "the plan changed meanwhile; edit not applied")
            return
        new = plan.model_copy(deep=True)
        new.step(index).params = params
        new.seal()
        if app.agent.audit is not None:
            app.agent.audit.write("edit", plan_hash=plan.hash, new_plan_hash=new.hash, step=index,
                                  old_params=step.params, params=params, by=app.agent.user, via="tui")
        pv.replace_plan(new)
        pv.note(("edited: ", "bold"), f"step {index} params {fmt_params(params)} — plan {new.hash[:12]}, "
                                     "approve to run it")
        self.post_message(PlanEdited(new, index))

    # ---- events pane ------------------------------------------------------------------------

    @on(EventsPane.Watch)
    def _watch(self, msg: EventsPane.Watch) -> None:
        self.watching = (msg.node, msg.topic)
        self.events.watching(msg.topic)
        self.run_watch(msg.node, msg.topic)

    @work(exclusive=True, group="watch", exit_on_error=False)
    async def run_watch(self, node: str | None, topic: str) -> None:
        from .._follow import follow

        conn, pane = self.app.conn, self.events
        where = node or f"{conn.node_id or 'this node'} (connected)"

        def status(state: str, detail: str) -> None:
            if state == "up":
                pane.status(f"watching {topic} on {where}")
            elif state == "lost":
                pane.status(f"link lost; watching {topic} on {where} again when the node is back", error=True)
            else:
                pane.status(f"cannot watch {topic} on {where}: {detail}", error=True)

        await follow(conn, node, topic, on_event=pane.add_event, on_status=status)
