"""Workflows: list, view, create, edit (steps as JSON), enable/disable, delete.

Edits carry the version they were based on; when someone else saved first, the server's
409 is shown in the editor with an offer to reload, so an edit is never lost silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

from ventryx_shared.workflows import Step, Workflow

from .. import formatting as fmt
from ..client import ApiError, VentryxClient
from ..widgets.choices import MarkedCheckbox
from ..widgets.table import ResourceTable
from .base import ConfirmDialog, Dialog, SectionScreen

STEPS_EXAMPLE = """[
  {"name": "notify", "action": "http.request", "config": {"url": "https://example.com/hook"}}
]"""


def check_steps(text: str) -> tuple[list | None, str]:
    """The steps as JSON values, or None and what is wrong with them, checked with the
    shared schema the server uses, so the error shows in place before any request."""
    try:
        steps = msgspec.json.decode(text.strip() or "[]")
    except msgspec.DecodeError as exc:
        return None, f"Steps are not valid JSON: {exc}"
    if not isinstance(steps, list):
        return None, 'Steps must be a JSON list: [ {"name", "action", "config"}, ... ]'
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            return None, f"Step {index + 1} must be an object with name, action and config."
        try:
            msgspec.convert(step, Step)
        except (msgspec.ValidationError, ValueError) as exc:
            return None, f"Step {index + 1}: {exc}"
    names = [step.get("name") for step in steps]
    if len(set(names)) != len(names):
        return None, "Each step needs its own name."
    return steps, ""


class WorkflowEditor(Dialog[Workflow]):
    """Create (``workflow=None``) or edit a workflow."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("ctrl+s", "save", "Save", id="save-workflow"),
        # Tab moves on (the steps box does not trap it); f7 is the text area's select-all.
        Binding("tab", "app.focus_next", "Next field", id="editor-next-field"),
        Binding("f7", "select_all_steps", "Select all steps", id="select-all-steps", priority=True),
    ]
    DIALOG_CLASSES = "editor"

    def __init__(self, workflow: Workflow | None = None):
        super().__init__()
        # The form edits the workflow's JSON form, which is also what a PATCH compares with.
        self.workflow = msgspec.to_builtins(workflow) if workflow is not None else None
        workflow = self.workflow
        self.TITLE_TEXT = (
            f"Edit workflow {workflow['name']} (version {workflow['version']})"
            if workflow
            else "New workflow"
        )

    def compose_form(self) -> ComposeResult:
        workflow = self.workflow or {}
        with Horizontal(classes="form-row"):
            yield Label("Name", classes="form-label")
            yield Input(workflow.get("name", ""), id="wf-name", compact=True, max_length=100)
        with Horizontal(classes="form-row"):
            yield Label("Trigger", classes="form-label")
            yield Input(
                workflow.get("trigger", ""),
                id="wf-trigger",
                compact=True,
                placeholder="order.created, order.* or *",
            )
        with Horizontal(classes="form-row"):
            yield Label("Description", classes="form-label")
            yield Input(workflow.get("description", ""), id="wf-description", compact=True)
        with Horizontal(classes="form-row"):
            yield Label("Enabled", classes="form-label")
            yield MarkedCheckbox(
                "runs when a matching event arrives",
                workflow.get("enabled", True),
                id="wf-enabled",
                compact=True,
            )
        yield Label(
            "Steps (JSON): tab moves on, f7 selects all, ctrl+s saves", classes="form-label-wide"
        )
        steps = workflow.get("steps")
        text = (
            msgspec.json.format(msgspec.json.encode(steps), indent=2).decode()
            if steps is not None
            else STEPS_EXAMPLE
        )
        yield TextArea(text, id="wf-steps", soft_wrap=False, tab_behavior="focus")
        yield Static(id="steps-error")

    def compose_buttons(self) -> ComposeResult:
        yield Button("Reload latest", id="reload", compact=True)
        yield Button("Save", id="save", variant="primary", compact=True)
        yield from super().compose_buttons()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#steps-error").display = False
        self.query_one("#reload").display = False
        self.opened_as = self.form_values()

    def form_values(self) -> tuple:
        return (
            self.query_one("#wf-name", Input).value,
            self.query_one("#wf-trigger", Input).value,
            self.query_one("#wf-description", Input).value,
            self.query_one("#wf-enabled", Checkbox).value,
            self.query_one("#wf-steps", TextArea).text,
        )

    def action_cancel(self) -> None:
        """Esc with unsaved edits asks before they are thrown away."""
        if self.form_values() == self.opened_as:
            self.dismiss(None)
            return
        self.app.push_screen(
            ConfirmDialog(
                "Discard your changes?",
                "This workflow has edits that are not saved.",
                "Discard them",
            ),
            lambda sure: self.dismiss(None) if sure else None,
        )

    def action_select_all_steps(self) -> None:
        steps = self.query_one("#wf-steps", TextArea)
        steps.focus()
        steps.select_all()

    @on(TextArea.Changed, "#wf-steps")
    def _steps_changed(self) -> None:
        _steps, problem = check_steps(self.query_one("#wf-steps", TextArea).text)
        error = self.query_one("#steps-error", Static)
        error.update(Text(problem))
        error.display = bool(problem)

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        steps, problem = check_steps(self.query_one("#wf-steps", TextArea).text)
        if steps is None:
            self.query_one("#steps-error", Static).update(Text(problem))
            self.query_one("#steps-error").display = True
            self.query_one("#wf-steps").focus()
            return
        body = {
            "name": self.query_one("#wf-name", Input).value.strip(),
            "trigger": self.query_one("#wf-trigger", Input).value.strip(),
            "description": self.query_one("#wf-description", Input).value,
            "enabled": self.query_one("#wf-enabled", Checkbox).value,
            "steps": steps,
        }
        if self.workflow is None:
            self.submit("Creating the workflow", lambda client: client.create_workflow(body))
            return
        changes = {k: v for k, v in body.items() if self.workflow.get(k) != v}
        if not changes:
            self.dismiss(None)
            return
        version = self.workflow["version"]
        self.submit(
            "Saving the workflow",
            lambda client: client.update_workflow(
                self.workflow["id"], {"version": version, **changes}
            ),
        )

    def failed(self, error: ApiError, what: str) -> None:
        if error.status == 409 and self.workflow is not None and error.param == "version":
            self.show_error(
                "Not saved: someone saved this workflow after you opened it "
                f"(request id {error.request_id}). Reload latest shows theirs "
                "(your edits go), then Save; Cancel keeps theirs."
            )
            self.query_one("#reload").display = True
            self.query_one("#reload").focus()
            self.app.notify(error.describe(), severity="warning")
            return
        super().failed(error, what)

    @on(Button.Pressed, "#reload")
    def reload(self) -> None:
        self._reload()

    def _reload(self):
        async def load(client: VentryxClient):
            return await client.get_workflow(self.workflow["id"])

        self.run_worker(
            self._apply_latest(load), exclusive=True, group="submit", exit_on_error=False
        )

    async def _apply_latest(self, load) -> None:
        try:
            latest = msgspec.to_builtins(await load(self.app.client))
        except ApiError as error:
            self.show_error(f"Reloading failed: {error.describe()}")
            return
        self.workflow = latest
        self.query_one("#wf-name", Input).value = latest["name"]
        self.query_one("#wf-trigger", Input).value = latest["trigger"]
        self.query_one("#wf-description", Input).value = latest.get("description", "")
        self.query_one("#wf-enabled", Checkbox).value = latest["enabled"]
        self.query_one("#wf-steps", TextArea).text = msgspec.json.format(
            msgspec.json.encode(latest["steps"]), indent=2
        ).decode()
        self.query_one(".dialog-title", Static).update(
            Text(f"Edit workflow {latest['name']} (version {latest['version']})", style="bold")
        )
        self.query_one("#reload").display = False
        self.opened_as = self.form_values()
        self.show_error("")


class ConfirmDeleteDialog(Dialog[bool]):
    TITLE_TEXT = "Delete workflow"
    AUTO_FOCUS = "#cancel"

    def __init__(self, workflow: Workflow):
        super().__init__()
        self.workflow = workflow

    def compose_form(self) -> ComposeResult:
        yield Static(
            Text(
                f"Delete {self.workflow.name} ({self.workflow.trigger})? "
                "Events that matched it keep its id. This cannot be undone."
            )
        )

    def compose_buttons(self) -> ComposeResult:
        yield Button("Delete", id="delete", variant="error", compact=True)
        yield from super().compose_buttons()

    @on(Button.Pressed, "#delete")
    def delete(self) -> None:
        workflow = self.workflow

        async def call(client: VentryxClient) -> bool:
            await client.delete_workflow(workflow.id, workflow.version)
            return True

        self.submit("Deleting the workflow", call)


class WorkflowsScreen(SectionScreen):
    SECTION = "Workflows"
    HELP = (
        "Workflows of the environment shown at the top right. Enter or e edits "
        "(steps as JSON, checked as you type), space enables or disables, x deletes."
    )
    MUTATING = {
        "new_workflow": "workflows:write",
        "edit_workflow": "workflows:write",
        "toggle_workflow": "workflows:write",
        "delete_workflow": "workflows:write",
    }
    BINDINGS = [
        Binding("n", "new_workflow", "New", id="new-workflow"),
        Binding("e", "edit_workflow", "Edit", id="edit-workflow"),
        Binding("space", "toggle_workflow", "On/off", id="toggle-workflow"),
        Binding("x", "delete_workflow", "Delete", id="delete-workflow"),
    ]
    COLUMNS = ("Name", "Trigger", "Enabled", "Steps", "Version", "Updated")

    def __init__(self):
        super().__init__()
        self.workflows: list[Workflow] = []

    def compose_body(self) -> ComposeResult:
        table = ResourceTable(id="workflows-table")
        table.add_column("Name", width=22)
        table.add_columns(*self.COLUMNS[1:])
        yield table
        yield Static(id="detail", classes="detail")

    async def fetch(self, client: VentryxClient):
        self.require_environment(client, "workflows")
        return await client.list_workflows()

    def show(self, result) -> None:
        self.workflows, _more = result
        self.render_rows()

    def show_failure(self, error: ApiError) -> None:
        self.workflows = []
        self.render_rows()

    def filter_changed(self) -> None:
        self.render_rows()

    def render_rows(self) -> None:
        table = self.query_one(ResourceTable)
        selected = table.selected_key
        table.clear()
        visible = [
            w for w in self.workflows if self.matches(w.name, w.trigger, w.description, w.id)
        ]
        for workflow in visible:
            table.add_row(
                Text(workflow.name, overflow="ellipsis", no_wrap=True),
                workflow.trigger,
                "on" if workflow.enabled else "off",
                str(len(workflow.steps)),
                str(workflow.version),
                fmt.timestamp(workflow.updated_at),
                key=workflow.id,
            )
        if selected is not None:
            for index, workflow in enumerate(visible):
                if workflow.id == selected:
                    table.move_cursor(row=index)
        self.update_detail()

    def selected(self) -> Workflow | None:
        workflow_id = self.query_one(ResourceTable).selected_key
        return next((w for w in self.workflows if w.id == workflow_id), None)

    def on_data_table_row_highlighted(self) -> None:
        self.update_detail()

    @on(ResourceTable.RowSelected)
    def _open(self) -> None:
        if self.check_action("edit_workflow", ()):
            self.action_edit_workflow()

    def update_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        workflow = self.selected()
        if workflow is None:
            empty = "No workflows here yet." + (
                " Press n to create one." if self.check_action("new_workflow", ()) else ""
            )
            detail.update(
                Text(
                    empty
                    if not self.workflows
                    else "No workflow matches the filter; esc clears it."
                )
            )
            return
        steps = ", ".join(f"{s.name} ({s.action})" for s in workflow.steps) or "no steps"
        detail.update(
            Text(
                f"{workflow.name}  {fmt.identifier(workflow.id)}  "
                f"{'enabled' if workflow.enabled else 'disabled'}\n"
                f"{workflow.description or 'no description'}\n"
                f"steps: {steps}"
            )
        )

    def action_new_workflow(self) -> None:
        self.app.push_screen(WorkflowEditor(), self._saved)

    def action_edit_workflow(self) -> None:
        workflow = self.selected()
        if workflow is not None:
            self.app.push_screen(WorkflowEditor(workflow), self._saved)

    def _saved(self, workflow: Workflow | None) -> None:
        if workflow:
            self.notify(f"Saved {workflow.name} (version {workflow.version}).")
            self.load()

    def action_toggle_workflow(self) -> None:
        workflow = self.selected()
        if workflow is None:
            return
        body = {"version": workflow.version, "enabled": not workflow.enabled}
        verb = "Disabling" if workflow.enabled else "Enabling"
        self.change(
            f"{verb} {workflow.name}",
            lambda client: client.update_workflow(workflow.id, body),
            lambda _updated: self.load(),
        )

    def action_delete_workflow(self) -> None:
        workflow = self.selected()
        if workflow is not None:
            self.app.push_screen(
                ConfirmDeleteDialog(workflow), lambda deleted: self.load() if deleted else None
            )

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield from super().palette_commands()
        for action, title, text in (
            ("new_workflow", "New workflow", "Create a workflow (key n)"),
            ("edit_workflow", "Edit workflow", "Edit the selected workflow (key e)"),
            ("toggle_workflow", "Enable/disable workflow", "Switch it on or off (key space)"),
            ("delete_workflow", "Delete workflow", "Delete the selected workflow (key x)"),
        ):
            if self.check_action(action, ()):
                yield SystemCommand(title, text, getattr(self, f"action_{action}"))
