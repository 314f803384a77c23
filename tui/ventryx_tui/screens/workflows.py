from textual.app import ComposeResult

from ..widgets.table import ResourceTable
from .base import SectionScreen


class WorkflowsScreen(SectionScreen):
    SECTION = "Workflows"

    def compose_body(self) -> ComposeResult:
        yield ResourceTable()
