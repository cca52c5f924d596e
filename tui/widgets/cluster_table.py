"""The live cluster table (rendered from a :class:`~cloudisense.tui._state.ClusterModel`)."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from .._state import CLUSTER_COLUMNS, ClusterModel


class ClusterTable(DataTable):
    """One row per node; re-rendered at most a few times a second, only when the model changed."""

    class NodeChosen(Message):
        """The operator picked a node (Enter or a click on a highlighted row)."""

        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

    def __init__(self, model: ClusterModel, clock: Callable[[], float], **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)
        self.model = model
        self.clock = clock
        self._shown_version = -1
        self._shown_at = 0.0
        self._shown_ids: list[str] = []
        self._shown_cells: dict[str, list] = {}

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
        ids = [r.id for r in rows]
        if ids != self._shown_ids:
            cursor = self.cursor_row
            self.clear()
            self._shown_cells = {}
            for r in rows:
                cells = self._styled(r.cells(now, self.model.self_id), r.online)
                self.add_row(*cells, key=r.id)
                self._shown_cells[r.id] = cells
            self._shown_ids = ids
            if rows:
                self.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        else:
            # Only the cells that changed (a big cluster sends many heartbeats; most change one number).
            for r in rows:
                cells = self._styled(r.cells(now, self.model.self_id), r.online)
                old = self._shown_cells.get(r.id, [])
                for i, (col, value) in enumerate(zip(CLUSTER_COLUMNS, cells, strict=False)):
                    if i >= len(old) or str(old[i]) != str(value) or type(old[i]) is not type(value):
                        self.update_cell(r.id, col, value, update_width=True)
                self._shown_cells[r.id] = cells
        on, total = self.model.counts()
        if self.parent is not None:
            self.parent.border_title = f"Cluster {on}/{total} online" if total else "Cluster (waiting for the node)"

    @staticmethod
    def _styled(cells: tuple[str, ...], online: bool) -> list[Text | str]:
        out: list[Text | str] = list(cells)
        out[1] = Text(cells[1], style="green" if online else "bold red")
        if not online:
            out[0] = Text(cells[0], style="dim")
        if cells[2].endswith(" sim"):
            out[2] = Text.assemble(cells[2][:-4], (" sim", "italic dim"))
        return out

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.NodeChosen(str(event.row_key.value)))
