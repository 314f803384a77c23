"""Checkboxes and radio buttons whose state is a character, not only a colour.

Textual draws an unchecked box with the same glyph as a checked one and tells them apart
by colour; under NO_COLOR or a 16-colour palette that reads as "all selected". These draw
the glyph only when checked.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.content import Content
from textual.strip import Strip
from textual.style import Style
from textual.widgets import Checkbox, RadioButton, SelectionList


class _MarkedToggle:
    @property
    def _button(self) -> Content:
        button_style = self.get_visual_style("toggle--button")
        side_style = Style(foreground=button_style.background, background=self.background_colors[1])
        inner = self.BUTTON_INNER if self.value else " "
        return Content.assemble(
            (self.BUTTON_LEFT, side_style), (inner, button_style), (self.BUTTON_RIGHT, side_style)
        )


class MarkedCheckbox(_MarkedToggle, Checkbox):
    pass


class MarkedRadioButton(_MarkedToggle, RadioButton):
    pass


class MarkedSelectionList(SelectionList):
    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        _, scroll_y = self.scroll_offset
        try:
            selection = self.get_option_at_index(scroll_y + y)
        except Exception:  # noqa: BLE001 - past the last option: nothing to mark
            return strip
        if len(segments) < 2 or selection.value in self._selected:
            return strip
        inner = segments[1]
        segments[1] = Segment(" " * len(inner.text), inner.style, inner.control)
        return Strip(segments, strip.cell_length)
