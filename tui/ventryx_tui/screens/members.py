from textual.app import ComposeResult

from ..widgets.table import ResourceTable
from .base import SectionScreen


class MembersScreen(SectionScreen):
    SECTION = "Members"

    def compose_body(self) -> ComposeResult:
        yield ResourceTable()
