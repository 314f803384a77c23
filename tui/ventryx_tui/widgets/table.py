"""A DataTable that also moves with j/k/g/G, selects whole rows, and can say it is empty."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class ResourceTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)

    @property
    def selected_key(self) -> str | None:
        """The row key (a resource id) under the cursor, if any."""
        if self.row_count == 0:
            return None
        row_key, _column = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value
