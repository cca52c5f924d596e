"""The live cluster table (rendered from a :class:`~cloudisense.tui._state.ClusterModel`)."""

from __future__ import annotations

from typing import Any, Callable

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable

from cloudisense.node._text import printable

from .._state import CLUSTER_COLUMNS, ClusterModel


class ClusterTable(DataTable[Text]):
    """One row per node; re-rendered at most a few times a second, only when the model changed."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Watch node"),
        Binding("d", "detail", "Detail"),
        Binding("l", "logs", "Logs"),
        Binding("slash", "filter", "Filter"),
        Binding("j", "cursor_down", "", show=False),
        Binding("k", "cursor_up", "", show=False),
    ]

    class DetailRequested(Message):
        """``d``: the node's detail view."""

        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    class LogsRequested(Message):
        """``l``: follow the output of the node's processes."""

        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    class FilterRequested(Message):
        """``/``: the screen opens the filter box."""

    class NodeChosen(Message):
        """The operator picked a node (Enter or a click on a highlighted row)."""

        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    def __init__(self, model: ClusterModel, clock: Callable[[], float], **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self.model = model
        self.clock = clock
        self._shown_version = -1
        self._shown_at = 0.0
        self._shown_ids: list[str] = []
        self._shown_cells: dict[str, list[Text]] = {}
        self.text_filter = ""
        self._laid_width = 26

    @property
    def procs_width(self) -> int:
        """The processes column takes what the other columns leave (they need about 60 cells)."""
        return max(26, self.size.width - 64)

    def on_resize(self) -> None:
        # Only a new width for the processes column re-lays the rows (re-laying changes the table's own
        # size, which must not start another round).
        if self.procs_width != self._laid_width:
            self._laid_width = self.procs_width
            self.refresh_rows(force=True)

    def set_filter(self, text: str) -> None:
        self.text_filter = text.strip().lower()
        self.refresh_rows(force=True)

    def _cursor_node(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return str(key) if key else None

    def action_detail(self) -> None:
        if node := self._cursor_node():
            self.post_message(self.DetailRequested(node))

    def action_logs(self) -> None:
        if node := self._cursor_node():
            self.post_message(self.LogsRequested(node))

    def action_filter(self) -> None:
        self.post_message(self.FilterRequested())

    async def _on_idle(self, event: events.Idle) -> None:
        # textual (8.2) measures changed cells' widths when the table is idle, but a paint in between caches
        # them cut to the old widths, and its render caches are keyed by its update count, not by width: a
        # busy console kept "OFFLINE" cut to "OFFLIN" for good (CI). Draw again when a width changed.
        before = [c.content_width for c in self.columns.values()]
        await super()._on_idle(event)
        if [c.content_width for c in self.columns.values()] != before:
            self._clear_caches()
            self.refresh()

    def on_mount(self) -> None:
        for col in CLUSTER_COLUMNS:
            self.add_column(col, key=col)
        self.refresh_rows(force=True)
        self.set_interval(0.25, self.refresh_rows)

    def refresh_rows(self, force: bool = False) -> None:
        # Ages ("seen") move with the clock: redraw once a second even without events.
        now = self.clock()
        if not force and self.model.version == self._shown_version and now - self._shown_at < 1.0:
            return
        self._shown_version, self._shown_at = self.model.version, now
        rows = self.model.rows()
        if self.text_filter:
            rows = [r for r in rows
                    if self.text_filter in " ".join(r.cells(now, self.model.self_id, self.procs_width)).lower()]
        ids = [r.id for r in rows]
        styled = {r.id: self._styled(r.cells(now, self.model.self_id, self.procs_width), r.online) for r in rows}
        if ids != self._shown_ids or self._wider_than_shown(styled):
            # Re-laid whole (the new widths are measured when the table is next idle: see _on_idle).
            cursor = self.cursor_row
            self.clear()
            for r in rows:
                self.add_row(*styled[r.id], key=r.id)
            self._shown_cells = styled
            self._shown_ids = ids
            if rows:
                self.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
            # The header takes the new widths only on a later paint; an idle console may not have one (a
            # snapshot showed the header narrow over wide rows for 15 s): ask for it.
            self.call_after_refresh(self.refresh)
        else:
            # Only the cells that changed (a big cluster sends many heartbeats; most change one number).
            for r in rows:
                cells = styled[r.id]
                old = self._shown_cells.get(r.id, [])
                for i, (col, value) in enumerate(zip(CLUSTER_COLUMNS, cells, strict=False)):
                    if i >= len(old) or str(old[i]) != str(value) or type(old[i]) is not type(value):
                        self.update_cell(r.id, col, value, update_width=True)
                self._shown_cells[r.id] = cells
        on, total = self.model.counts()
        if isinstance(self.parent, Widget):
            title = f"Cluster {on}/{total} online" if total else "Cluster (waiting for the node)"
            if self.text_filter:
                title += f" · filter {self.text_filter!r}: {len(rows)} shown"
            self.parent.border_title = escape(printable(title, limit=120))

    def _wider_than_shown(self, styled: dict[str, list[Text]]) -> bool:
        """A cell that no longer fits its column."""
        widths = [c.content_width for c in self.columns.values()]
        return any(cell.cell_len > w for cells in styled.values() for cell, w in zip(cells, widths, strict=False))

    @staticmethod
    def _styled(cells: tuple[str, ...], online: bool) -> list[Text]:
        # Every cell is Text of printable characters: names come from the nodes (a str cell would be markup).
        out = [Text(printable(c, limit=400)) for c in cells]
        out[1].stylize("green" if online else "bold red")
        if not online:
            out[0].stylize("dim")
            out[6].stylize("dim italic")
        if cells[2].endswith(" sim"):
            out[2] = Text.assemble(printable(cells[2][:-4], limit=40), (" sim", "italic dim"))
        return out

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.NodeChosen(str(event.row_key.value)))
