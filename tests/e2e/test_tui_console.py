"""The console's operator aids, against an in-memory cluster: help, command palette, footer keys,
j/k, Escape-then-typing, Ask box history and Tab completion.

Each test drives the keys an operator would press and checks what the screen
shows and what the (fake) cluster received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from textual import events
from textual._xterm_parser import XTermParser
from textual.command import CommandList, CommandPalette

from cloudisense.tui import make_app
from cloudisense.tui._grammar import examples, parses
from cloudisense.tui._messages import ExecutionFinished, PlanReady
from cloudisense.tui.screens import EditParamsScreen
from cloudisense.tui.screens.dialogs import ConfirmScreen, FeedbackScreen
from cloudisense.tui.screens.help import HelpScreen
from cloudisense.tui.screens.logs import LogsScreen
from cloudisense.tui.screens.past_plan import PastPlanScreen
from cloudisense.tui.screens.node_detail import NodeDetailScreen
from cloudisense.tui.testing import FakeLink, screen_text, three_nodes, wait_for, wait_for_text
from cloudisense.tui.widgets import AskInput, ClusterTable, PlanView
from cloudisense.tui.widgets.plan_view import PlanTable

pytestmark = pytest.mark.timeout(90)

NOW = 1_000_000.0


@contextlib.asynccontextmanager
async def console(tmp_path, link: FakeLink | None = None, size: tuple[int, int] = (80, 24), **kw):
    link = link or FakeLink(three_nodes(NOW))
    kw.setdefault("model", "offline")
    app = make_app(url="ws://127.0.0.1:8765/ws", client_factory=link.factory, audit=tmp_path / "audit.jsonl",
                   clock=lambda: NOW, **kw)
    seen: list = []
    async with app.run_test(size=size, message_hook=seen.append) as pilot:
        # Connected, and every node of the view in the table (it redraws 4 times a second): CI pressed j
        # twice while the table held fewer rows than the model, and the cursor stopped at 1.
        await wait_for(pilot, lambda: app.link_state == "connected" and 0 < app.cluster.counts()[1]
                       == app.screen.query_one(ClusterTable).row_count, what="connected, every node listed")
        yield app, pilot, seen, link


async def ask(pilot, seen: list, text: str):
    n = sum(isinstance(m, PlanReady) for m in seen)
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: sum(isinstance(m, PlanReady) for m in seen) > n, what=f"a plan for {text!r}")
    return [m for m in seen if isinstance(m, PlanReady)][-1].result


def footer(app) -> str:
    lines = [line for line in screen_text(app).splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---- help ------------------------------------------------------------------------------------

async def test_question_mark_and_f1_open_help_with_every_key_and_examples_the_planner_accepts(tmp_path):
    async with console(tmp_path, size=(100, 40)) as (app, pilot, seen, link):
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        assert app.query_one("#request", AskInput).value == ""  # '?' was not typed into the box
        text = screen_text(app)
        for key_and_what in ("Approve", "Reject", "Toggle step", "Edit params", "Next tab", "History", "Complete",
                             "Watch node", "ctrl+p"):
            assert key_and_what in text, key_and_what
        exs = examples(["node-a", "node-b", "node-c"], ["logger"])
        assert "restart logger on the coolest node" in exs and "stop logger on node-c" in exs
        assert all(parses(e, ["node-a", "node-b", "node-c"], ["logger"]) for e in exs)
        assert not parses("restart logger on node-z please then", ["node-a"], ["logger"])   # a refusal is no example
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help closed")
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help again on F1")
        planner = str(app.screen.query_one("#help-planner").render())
        assert "restart logger on the coolest node" in planner and "node-c" in planner  # this cluster's names
        await pilot.press("f1")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), what="F1 closes it too")
        # Once something is typed, '?' is a character.
        await pilot.press("s", "question_mark")
        assert app.query_one("#request", AskInput).value == "s?"
        assert not isinstance(app.screen, HelpScreen)
        # An example from the help, asked, becomes a plan (the help shows what the planner accepts).
        await pilot.press("ctrl+u")
        result = await ask(pilot, seen, "restart logger on the coolest node")
        assert result.plan and result.plan.steps[0].targets == ["node-b"]


# ---- command palette -------------------------------------------------------------------------

async def palette(pilot, app, query: str) -> None:
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
    await pilot.press(*query)
    await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0 and
                   query.split()[0].lower() in screen_text(app).lower(), what=f"hits for {query!r}")
    await pilot.pause(0.2)  # the palette's search is debounced; let the last query's hits land


async def test_palette_watches_a_topic_on_a_node(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await palette(pilot, app, "watch process node-c")
        await pilot.press("enter")
        await wait_for(pilot, lambda: ("node-c", "process/#") in link.subscribed, what="the subscription")
        await wait_for_text(pilot, app, "watching process/# on node-c")
        link.emit("process/logger/restarted", {"name": "logger", "pid": 99}, node="node-c", ts=NOW)
        await wait_for_text(pilot, app, "process/logger/restarted")


async def test_palette_approves_the_plan_on_screen_and_the_node_restarts(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "restart logger on the coolest node")
        old_pid = link.fake.nodes["node-b"].processes["logger"]["pid"]
        await palette(pilot, app, "approve plan")
        await pilot.press("enter")
        fin = await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        assert fin.report.status == "done"
        assert [(c.node, c.method) for c in link.fake.mutating_calls] == [("node-b", "restart")]
        assert link.fake.nodes["node-b"].processes["logger"]["pid"] != old_pid


async def test_palette_goes_to_a_node_and_switches_theme(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await palette(pilot, app, "go to node-c")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen) and app.screen.node == "node-c",
                       what="node-c's detail view")
        await pilot.press("escape")
        table = app.main_screen.query_one(ClusterTable)
        await wait_for(pilot, lambda: not isinstance(app.screen, NodeDetailScreen) and table.cursor_row == 2,
                       what="back, node-c selected")
        before = app.theme
        target = "nord" if before != "nord" else "gruvbox"
        await palette(pilot, app, f"switch theme {target}")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == target, what="the theme")


# ---- footer, keys ----------------------------------------------------------------------------

async def test_footer_shows_the_focused_widgets_keys(tmp_path):
    async with console(tmp_path, size=(100, 30)) as (app, pilot, seen, link):
        await wait_for(pilot, lambda: "Plan it" in footer(app) and "History" in footer(app), what="Ask keys")
        await pilot.press("shift+tab")
        assert isinstance(app.focused, ClusterTable)
        await wait_for(pilot, lambda: "Watch node" in footer(app), what="Enter in the footer")
        await pilot.press("escape")
        await ask(pilot, seen, "restart logger on the coolest node")
        await wait_for(pilot, lambda: "Approve" in footer(app) and "Reject" in footer(app), what="plan keys")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditParamsScreen), what="the editor")
        await wait_for(pilot, lambda: "Cancel" in footer(app), what="the editor's keys")
        assert "Approve" not in footer(app) and "Next tab" not in footer(app)


async def test_footer_shows_only_whole_keys_at_80_100_and_120_columns(tmp_path):
    async with console(tmp_path, size=(80, 24)) as (app, pilot, seen, link):
        for width in (80, 100, 120):
            await pilot.resize_terminal(width, 24)
            await wait_for(pilot, lambda: footer(app).endswith(("f1 Help", "^p palette")), what=f"keys at {width}")
            for focus in ("#request", "#cluster"):
                app.screen.query_one(focus).focus()
                await pilot.pause(0.1)
                keys = await wait_for(pilot, lambda: footer(app) if footer(app).endswith(("Help", "palette")) else "",
                                      what=f"the footer of {focus} at {width}")
                assert len(keys) <= width, keys
                # Never half a key under the palette key (it was "^q Quit f1 ▏^p palette" at 80)
                assert ("▏^p palette" in keys) == (width >= 100), keys
                assert "f1 Help" in keys, keys


async def test_plan_title_says_when_columns_are_off_screen_until_scrolled_to_them(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "restart logger on the coolest node")
        await wait_for_text(pilot, app, "needs approval · more columns: → scrolls")
        for _ in range(6):      # → on the plan table scrolls it by a third, as the hint says
            await pilot.press("right")
        lines = (await wait_for_text(pilot, app, "needs approval")).splitlines()
        title = next(i for i, line in enumerate(lines) if "Plan " in line and "needs approval" in line)
        assert "more columns" not in lines[title]
        assert lines[title + 1].split()[-1] == "reason"       # the table's last column is on screen now


async def test_j_and_k_move_the_table_cursors(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        table = app.screen.query_one(ClusterTable)
        await pilot.press("shift+tab")
        assert app.focused is table and table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("enter")  # Enter on node-b: the Events tab, ready to watch node-b
        await wait_for(pilot, lambda: app.screen.query_one("#watch-input").value == "node-b process/#")


async def test_tab_order_follows_the_screen_top_to_bottom(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        chain = [w.id or type(w).__name__ for w in app.screen.focus_chain]
        assert chain[:2] == ["cluster", "request"]
        assert app.focused.id == "request"
        await pilot.press("shift+tab")
        assert app.focused.id == "cluster"


async def test_escape_then_a_letter_5ms_apart_both_take_effect(tmp_path):
    """The terminal sends ESC, then 's' 5 ms later: Textual's parser joins them into alt+s within its
    ESCDELAY.  The console still sees Escape (back to the Ask box) and types the 's' there."""
    parser = XTermParser()
    keys = list(parser.feed("\x1b"))
    await asyncio.sleep(0.005)  # the operator's typing speed, not a synchronisation
    keys += list(parser.feed("s"))
    deadline = time.monotonic() + 2
    while not keys and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        keys += list(parser.tick())
    assert [k.key for k in keys] == ["alt+s"]  # what a terminal delivers: one key, the Escape swallowed

    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "restart logger on the coolest node")
        assert isinstance(app.focused, PlanTable)
        for k in keys:
            app.post_message(k)
        box = app.query_one("#request", AskInput)
        await wait_for(pilot, lambda: app.focused is box and box.value == "s", what="escape, then 's' typed")
        # In the Ask box an escaped letter is still the letter.
        app.post_message(events.Key("alt+t", "t"))
        await wait_for(pilot, lambda: box.value == "st", what="'t' typed")


# ---- the Ask box -----------------------------------------------------------------------------

async def test_placeholder_is_a_hint_and_the_box_looks_empty_after_enter(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        box = app.query_one("#request", AskInput)
        assert box.placeholder.startswith("e.g. ")
        line = next(line for line in screen_text(app).splitlines() if "Ask ›" in line)
        assert "e.g." in line
        await ask(pilot, seen, "show nodes")
        assert box.value == ""
        await pilot.press("escape")
        await wait_for_text(pilot, app, "Ask › e.g.")


async def test_history_up_down_and_it_survives_a_restart(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "show nodes")
        await pilot.press("escape")
        await ask(pilot, seen, "status logger")
        await pilot.press("escape")
        box = app.query_one("#request", AskInput)
        await pilot.press(*"sho")
        await pilot.press("up")
        assert box.value == "status logger"
        await pilot.press("up")
        assert box.value == "show nodes"
        await pilot.press("up")
        assert box.value == "show nodes"  # the oldest stays
        await pilot.press("down", "down")
        assert box.value == "sho"  # back to what was being typed
    path = tmp_path / "tui-history.jsonl"
    assert [json.loads(line) for line in path.read_text().splitlines()] == ["show nodes", "status logger"]
    async with console(tmp_path) as (app, pilot, seen, link):
        await pilot.press("up")
        assert app.query_one("#request", AskInput).value == "status logger"


async def test_tab_completes_verbs_processes_and_nodes_from_the_live_cluster(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        box = app.query_one("#request", AskInput)
        await pilot.press(*"resta", "tab")
        assert box.value == "restart "
        await pilot.press(*"log", "tab")
        assert box.value == "restart logger "
        await pilot.press(*"on node-", "tab")
        assert box.value == "restart logger on node-"  # three nodes: no guess, the candidates are listed
        assert box.last_candidates == ["node-a", "node-b", "node-c"]
        # A node that joins is completed at once.
        link.emit("$cluster/node/online", {"id": "zeta-7", "online": True}, node="zeta-7", ts=NOW)
        await wait_for(pilot, lambda: "zeta-7" in app.cluster.nodes)
        await pilot.press("ctrl+u", *"restart logger on ze", "tab")
        assert box.value == "restart logger on zeta-7 "
        # Nothing to complete: Tab moves focus on, as everywhere else.
        await pilot.press("ctrl+u", "tab")
        assert app.focused is not box


# ---- plans: reject with feedback, superseded, answers, confirmation ---------------------------

def audit(tmp_path) -> list[dict]:
    from cloudisense.agent import read_audit

    return list(read_audit(tmp_path / "audit.jsonl"))


async def test_reject_with_feedback_revises_the_plan_and_the_revision_runs(tmp_path):
    async with console(tmp_path, size=(100, 30)) as (app, pilot, seen, link):
        first = await ask(pilot, seen, "restart logger on the coolest node")
        assert first.plan.steps[0].targets == ["node-b"]
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, FeedbackScreen), what="the feedback field")
        n = sum(isinstance(m, PlanReady) for m in seen)
        await pilot.press(*"not node-b", "enter")
        await wait_for(pilot, lambda: sum(isinstance(m, PlanReady) for m in seen) > n, what="the revised plan")
        revised = [m for m in seen if isinstance(m, PlanReady)][-1].result
        assert revised.plan.steps[0].targets == ["node-c"]  # the next coolest
        await wait_for_text(pilot, app, "revised", "not node-b", "needs approval")
        rej = [r for r in audit(tmp_path) if r["event"] == "rejection"]
        assert rej[-1]["feedback"] == "not node-b" and rej[-1]["plan_hash"] == first.plan.hash
        await pilot.press("a")
        await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        assert [(c.node, c.method) for c in link.fake.mutating_calls] == [("node-c", "restart")]


async def test_escape_in_the_feedback_field_keeps_the_plan_waiting(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "restart logger on the coolest node")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, FeedbackScreen), what="the feedback field")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FeedbackScreen))
        assert app.screen.query_one(PlanView).awaiting_approval
        assert "rejection" not in [r["event"] for r in audit(tmp_path)]


async def test_a_waiting_plan_superseded_by_a_new_request_is_announced(tmp_path):
    async with console(tmp_path, size=(120, 40)) as (app, pilot, seen, link):
        old = await ask(pilot, seen, "restart logger on the coolest node")
        await pilot.press("escape")
        await ask(pilot, seen, "show nodes")
        # In the plan's log, and as a toast.
        await wait_for_text(pilot, app, f"plan {old.plan.hash[:12]} was waiting")
        assert any("superseded by the new request" in n.message for n in app._notifications)
        rej = [r for r in audit(tmp_path) if r["event"] == "rejection"]
        assert rej and rej[-1]["plan_hash"] == old.plan.hash and "superseded" in rej[-1]["feedback"]
        assert not link.fake.mutating_calls


async def test_answers_and_failures_are_not_called_nothing_to_approve(tmp_path):
    async with console(tmp_path, size=(100, 30)) as (app, pilot, seen, link):
        await ask(pilot, seen, "show nodes")
        text = await wait_for_text(pilot, app, "Answer (read-only")
        assert "Nothing to approve" not in text and "node-b" in text
        await pilot.press("escape")
        r = await ask(pilot, seen, "frobnicate the wibble")
        text = screen_text(app)
        assert "Nothing to approve" not in text and "Answer" not in text.split("Plan  Events")[1]
        assert ("Not planned" in text or "Planning failed" in text), (r, text)


async def test_fan_out_asks_for_confirmation_naming_every_node(tmp_path):
    async with console(tmp_path, size=(100, 30)) as (app, pilot, seen, link):
        await ask(pilot, seen, "restart logger on all nodes")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        text = screen_text(app)
        assert "Run on 3 nodes: node-a, node-b, node-c?" in text
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert not link.fake.mutating_calls and app.screen.query_one(PlanView).awaiting_approval
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation again")
        await pilot.press("y")
        fin = await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        assert fin.report.status == "done"
        assert sorted(c.node for c in link.fake.mutating_calls) == ["node-a", "node-b", "node-c"]


async def test_a_stop_on_one_node_asks_for_confirmation_too(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        await ask(pilot, seen, "stop logger on node-c")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert "Run on 1 node: node-c?" in screen_text(app) and "supervisor.stop" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        assert [(c.node, c.method) for c in link.fake.mutating_calls] == [("node-c", "stop")]
        assert link.fake.nodes["node-c"].processes["logger"]["state"] == "stopped"


# ---- the plan log ----------------------------------------------------------------------------

async def test_each_request_gets_its_own_log_block_with_its_results_and_c_clears(tmp_path):
    from cloudisense.tui.widgets.plan_log import PlanBlock, PlanLog

    async with console(tmp_path, size=(100, 40)) as (app, pilot, seen, link):
        await ask(pilot, seen, "show nodes")
        await pilot.press("escape")
        await ask(pilot, seen, "restart logger on the coolest node")
        await pilot.press("a")
        await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        log = app.screen.query_one(PlanLog)
        await wait_for(pilot, lambda: "audit: execution" in log.text(), what="the audit line")
        blocks = log.blocks
        assert [b.title for b in blocks] == ["> show nodes", "> restart logger on the coolest node"]
        assert blocks[0].collapsed and not blocks[1].collapsed
        first_text = "\n".join(t.plain for t in blocks[0].lines)
        second_text = "\n".join(t.plain for t in blocks[1].lines)
        assert "node-b" in first_text and "restart" not in first_text
        assert "approved:" in second_text and "step 1 node-b supervisor.restart ok" in second_text
        log.focus()
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.screen.query(PlanBlock), what="the log cleared")


# ---- events: $-topics hidden, filter, pause, clear; cluster filter; offline rows --------------

async def test_events_hide_heartbeats_by_default_filter_pause_and_clear(tmp_path):
    from cloudisense.tui.widgets.events_pane import EventsPane

    async with console(tmp_path, size=(120, 35)) as (app, pilot, seen, link):
        app.watch_topic("node-b", "#")
        await wait_for(pilot, lambda: ("node-b", "#") in link.subscribed)
        await wait_for_text(pilot, app, "watching # on node-b")
        pane = app.screen.query_one(EventsPane)
        # A watch on another node hears the $cluster heartbeats about it too (a subscription hears its
        # node go offline and come back).
        link.emit("$cluster/node/state", {"id": "node-b", "online": True}, node="node-b", ts=NOW)
        link.emit("process/logger/restarted", {"name": "logger", "pid": 4242}, node="node-b", ts=NOW)
        link.emit("metrics/node", {"cpu_percent": 3.0}, node="node-b", ts=NOW)
        await wait_for_text(pilot, app, "process/logger/restarted", "metrics/node", "1 hidden ($-topics")
        assert "$cluster/node/state" not in screen_text(app)
        assert app.focused is pane.log_view
        await pilot.press("h")
        await wait_for_text(pilot, app, "$cluster/node/state")
        await pilot.press("h", "slash", *"metrics")
        await wait_for(pilot, lambda: "process/logger/restarted" not in screen_text(app)
                       and "metrics/node" in screen_text(app), what="filtered")
        await pilot.press("escape")  # clears the filter
        await wait_for_text(pilot, app, "process/logger/restarted", "metrics/node")
        pane.log_view.focus()
        await pilot.press("p")
        link.emit("process/logger/stopped", {"name": "logger"}, node="node-b", ts=NOW)
        await wait_for_text(pilot, app, "PAUSED (1 waiting")
        assert "process/logger/stopped" not in screen_text(app)
        await pilot.press("p")
        await wait_for_text(pilot, app, "process/logger/stopped")
        await pilot.press("c")
        await wait_for(pilot, lambda: "process/logger" not in screen_text(app), what="cleared")


async def test_events_escape_markup_and_control_characters(tmp_path):
    async with console(tmp_path, size=(120, 35)) as (app, pilot, seen, link):
        app.watch_topic(None, "#")
        await wait_for(pilot, lambda: (None, "#") in link.subscribed)
        link.emit("process/x/started", {"name": "[bold red]x[/]\x1b[2J\x9b31m"}, ts=NOW)
        text = await wait_for_text(pilot, app, "process/x/started")
        line = next(line for line in text.splitlines() if "process/x/started" in line)
        assert "[bold red]x[/]" in line and "\x1b" not in line and "\x9b" not in line


async def test_slash_filters_the_cluster_table(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        table = app.screen.query_one(ClusterTable)
        await pilot.press("shift+tab", "slash", *"node-c")
        await wait_for(pilot, lambda: table.row_count == 1, what="one row")
        assert "node-c" in screen_text(app) and "node-b " not in screen_text(app)
        assert "filter 'node-c': 1 shown" in screen_text(app)
        await pilot.press("enter")
        assert app.focused is table
        await pilot.press("enter")  # the one row left: watch node-c
        await wait_for(pilot, lambda: ("node-c", "process/#") in link.subscribed)


async def test_an_offline_row_does_not_show_its_processes_as_running(tmp_path):
    async with console(tmp_path, size=(100, 30)) as (app, pilot, seen, link):
        entry = link.fake.cluster_view()["nodes"][2]
        link.fake.nodes["node-c"].online = False
        link.emit("$cluster/node/offline", {**entry, "online": False}, node="node-c", ts=NOW)
        await wait_for_text(pilot, app, "Cluster 2/3 online")

        def row() -> str:
            return next(line for line in screen_text(app).splitlines() if "node-c" in line)
        # the row is re-laid out when a cell outgrows its column; under load that may take a frame more
        await wait_for(pilot, lambda: "OFFLINE" in row() and "last seen: logger" in row(), what="an offline row")
        assert "▶" not in row() and "4103" not in row()
        assert any("node-c went offline" in n.message for n in app._notifications)


# ---- node detail -----------------------------------------------------------------------------

async def test_node_detail_shows_metrics_services_processes_events_and_actions_go_through_approval(tmp_path):
    async with console(tmp_path, size=(120, 35)) as (app, pilot, seen, link):
        await pilot.press("shift+tab", "j", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeDetailScreen), what="the detail view")
        assert app.screen.node == "node-b"
        text = await wait_for_text(pilot, app, "38.5°C", "supervisor", "restart*", "logger", "running", "4102")
        entry = link.fake.cluster_view()["nodes"][1]
        entry["metrics"]["temperature_c"] = 44.0
        link.emit("$cluster/node/state", entry, node="node-b", ts=NOW)
        await wait_for_text(pilot, app, "44.0°C", "38–44", "$cluster/node/state")
        spark = app.screen.query_one("#s-temperature_c")
        assert list(spark.data)[-2:] == [38.5, 44.0]
        old_pid = link.fake.nodes["node-b"].processes["logger"]["pid"]
        await pilot.press("r")  # restart the highlighted process: planned, not run
        await wait_for(pilot, lambda: not isinstance(app.screen, NodeDetailScreen), what="back to the plan")
        res = await wait_for(pilot, lambda: next((m.result for m in seen if isinstance(m, PlanReady)), None))
        assert [(s.targets, s.method) for s in res.plan.steps] == [(["node-b"], "restart")]
        assert not link.fake.mutating_calls
        await pilot.press("a")
        await wait_for(pilot, lambda: next((m for m in seen if isinstance(m, ExecutionFinished)), None))
        assert link.fake.nodes["node-b"].processes["logger"]["pid"] != old_pid


# ---- past plans ------------------------------------------------------------------------------

async def test_history_lists_plans_of_earlier_sessions_with_their_outcome_and_opens_one(tmp_path):
    from cloudisense.agent import Agent, AuditLog, make_model

    link = FakeLink(three_nodes(NOW))
    earlier = Agent(link.fake, make_model("offline"), audit=AuditLog(tmp_path / "audit.jsonl", session="earlier1"))
    done = (await earlier.plan("restart logger on node-c")).plan
    report = await earlier.execute(done, earlier.approve(done, via="terminal"))
    new_pid = report.results[0].result["pid"]
    refused = (await earlier.plan("stop logger on node-a")).plan
    earlier.reject(refused, "node-a is busy", via="terminal")
    async with console(tmp_path, link, size=(120, 30)) as (app, pilot, seen, link):
        for _ in range(4):
            await pilot.press("f2")
        text = await wait_for_text(pilot, app, "2 plan(s) in the audit log, 2 from earlier sessions")
        rows = [line for line in text.splitlines() if "logger on node-" in line]
        assert "rejected" in rows[0] and "stop logger on node-a" in rows[0]     # newest first
        assert "done" in rows[1] and "supervisor.restart on node-c" in rows[1]
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PastPlanScreen), what="the past plan")
        text = await wait_for_text(pilot, app, 'supervisor.restart {"name": "logger"} on node-c', "outcome  done",
                                   f'"pid": {new_pid}')
        assert "session earlier1" in text and "step 1 node-c supervisor.restart ok" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PastPlanScreen), what="closed")


# ---- live logs -------------------------------------------------------------------------------

async def test_l_follows_a_nodes_logs_live_pause_search_and_escape_ends_the_subscription(tmp_path):
    link = FakeLink(three_nodes(NOW))
    link.fake.nodes["node-b"].logs["logger"] = [  # lines 0, 1, 2
        "2026-11-30T10:00:01.000 logger tick 1", "2026-11-30T10:00:01.500 \x1b]0;pwned\x07 [red]markup[/]",
        "2026-11-30T10:00:02.000 logger tick 2"]
    async with console(tmp_path, link, size=(100, 24)) as (app, pilot, seen, link):
        await pilot.press("shift+tab", "j", "l")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), what="the log view")
        await wait_for(pilot, lambda: ("node-b", "$process/+/log") in link.subscribed, what="the subscription")
        text = await wait_for_text(pilot, app, "logger tick 2", "following")
        assert "10:00:01.500 \\x1b]0;pwned\\x07 [red]markup[/]" in text    # escaped, shown as data
        assert "2026-11-30T10:00:01" not in text                              # one timestamp, not two

        def batch(seq, *ticks):
            return {"name": "logger", "node": "node-b", "seq": seq, "skipped": 0,
                    "lines": [f"2026-11-30T10:00:0{i}.000 logger tick {i}" for i in ticks]}
        link.emit("$process/logger/log", batch(2, 2, 3), node="node-b")       # tick 2 was read already
        text = await wait_for_text(pilot, app, "logger tick 3")
        assert text.count("logger tick 2") == 1
        await pilot.press("p")
        link.emit("$process/logger/log", batch(4, 4), node="node-b")
        await wait_for_text(pilot, app, "PAUSED (1 waiting")
        assert "logger tick 4" not in screen_text(app)
        await pilot.press("p")
        await wait_for_text(pilot, app, "logger tick 4")
        link.emit("$process/logger/log", batch(7, 7), node="node-b")         # 5 and 6 never came
        await wait_for_text(pilot, app, "2 lines of logger not shown", "logger tick 7")
        await pilot.press("slash", *"tick 3", "enter")
        text = await wait_for_text(pilot, app, "search 'tick 3'")
        assert "logger tick 3" in text and "logger tick 4" not in text and "logger tick 1" not in text
        await pilot.press("escape")      # back from the log view: the subscription ends
        await wait_for(pilot, lambda: not isinstance(app.screen, LogsScreen), what="back")
        await wait_for(pilot, lambda: not any(s.topic == "$process/+/log" for c in link.clients for s in c.subs),
                       what="the subscription closed")


async def test_rpc_sparkline_has_a_scale(tmp_path):
    async with console(tmp_path) as (app, pilot, seen, link):
        for rate in (1.0, 4.5, 2.0):
            link.emit("$sys/stats", {"rpc": {"calls": 10, "calls_per_s": rate, "recent": []}}, ts=NOW)
        await pilot.press("f2", "f2")
        await wait_for_text(pilot, app, "now 2.0 · min 1.0 · max 4.5")


async def test_cluster_table_shows_process_names_as_data(tmp_path):
    async with console(tmp_path, size=(120, 30)) as (app, pilot, seen, link):
        # the console subscribes to process events right after it connects: an event emitted before that is
        # (rightly) not delivered, so say it again until it shows, as a node would on its next change
        for _ in range(20):
            link.emit("process/x/started", {"name": "[bold red]x[/]\x1b[2J", "pid": 7}, ts=NOW)
            try:
                text = await wait_for_text(pilot, app, "[bold red]x[/]", timeout=3.0)
                break
            except AssertionError:
                continue
        else:
            pytest.fail("the process name never reached the cluster table")
        assert "\x1b" not in text and "\\x1b[2J" in text


# ---- the Pending tab (plans filed through MCP) -----------------------------------------------

async def mcp_files_a_restart(app, tmp_path, node: str = "node-b") -> str:
    """The MCP server's own code path files a pending plan in the console's state directory."""
    from cloudisense.agent import AuditLog
    from cloudisense.agent.mcp_server import ClusterMcp, McpSettings

    mcp = ClusterMcp(McpSettings(state_dir=str(app.state_dir)), conn=app.conn, store=app.pending_store,
                     audit=AuditLog(tmp_path / "audit.jsonl"))
    out = await mcp.call_tool("call", {"node": node, "service": "supervisor", "method": "restart",
                                       "params_json": '{"name": "logger"}', "reason": "the MCP client asked"})
    doc = out.data
    assert out.ok and doc.get("status") == "pending", out
    return doc["plan_id"]


async def test_pending_tab_approves_a_plan_the_mcp_server_filed_and_the_pid_changes(tmp_path):
    async with console(tmp_path, size=(120, 35)) as (app, pilot, seen, link):
        plan_id = await mcp_files_a_restart(app, tmp_path)
        old_pid = link.fake.nodes["node-b"].processes["logger"]["pid"]
        await pilot.press("f2", "f2", "f2")
        assert app.screen.query_one("#tabs").active == "tab-pending"
        await wait_for_text(pilot, app, plan_id, "supervisor.restart", "named explicitly: node-b")
        assert not link.fake.mutating_calls
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        assert f"Run pending plan {plan_id} on 1 node: node-b?" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.pending_store.get(plan_id).status == "done", what="the plan done")
        assert link.fake.nodes["node-b"].processes["logger"]["pid"] != old_pid
        assert [(c.node, c.method) for c in link.fake.mutating_calls] == [("node-b", "restart")]
        events = [(r["event"], r.get("via")) for r in audit(tmp_path)]
        assert ("approval", "tui") in events and ("execution", None) in events
        await pilot.press("f2", "f2", "f2")
        await wait_for_text(pilot, app, "No pending plans")


async def test_pending_tab_rejects_with_feedback_and_nothing_runs(tmp_path):
    async with console(tmp_path, size=(120, 35)) as (app, pilot, seen, link):
        plan_id = await mcp_files_a_restart(app, tmp_path, "node-c")
        app.open_pending(plan_id)  # the palette's "Reject pending plan ID"
        await wait_for_text(pilot, app, plan_id)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, FeedbackScreen), what="the feedback field")
        await pilot.press(*"node-c is in maintenance", "enter")
        await wait_for(pilot, lambda: app.pending_store.get(plan_id).status == "rejected", what="rejected")
        rej = [r for r in audit(tmp_path) if r["event"] == "rejection"]
        assert rej[-1]["feedback"] == "node-c is in maintenance" and rej[-1]["via"] == "tui"
        assert not link.fake.mutating_calls
