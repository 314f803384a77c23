from textual.app import ComposeResult

from ..widgets.table import ResourceTable
from .base import SectionScreen


class EventsScreen(SectionScreen):
    SECTION = "Events"

    def compose_body(self) -> ComposeResult:
        yield ResourceTable()
