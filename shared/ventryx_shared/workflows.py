"""Workflows on the wire: what an event of a matching type would start."""

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from .common import FREE_TEXT_PATTERN, PRINTABLE_PATTERN, Environment

MAX_STEPS = 50
MAX_STEPS_BYTES = 64 * 1024

# msgspec applies patterns with re.search, where $ also matches before a final newline;
# the __post_init__ checks below are the exact rule, the patterns document it.
_LABEL_CHARACTERS = PRINTABLE_PATTERN
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

TRIGGER_PATTERN = (
    r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.\*"
    r"|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$"
)
_TRIGGER = re.compile(TRIGGER_PATTERN.replace("$", r"\Z"))
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")

WorkflowName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=_LABEL_CHARACTERS,
        description="Unique within the organization and environment",
    ),
]
Description = Annotated[str, Meta(max_length=1000, pattern=FREE_TEXT_PATTERN)]
Trigger = Annotated[
    str,
    Meta(
        max_length=128,
        pattern=TRIGGER_PATTERN,
        description="The event types that start it: order.created, order.* (a prefix) or *",
    ),
]
StepName = Annotated[str, Meta(min_length=1, max_length=100, pattern=_LABEL_CHARACTERS)]
Action = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
        description="What the step does, as a dotted name: http.request",
    ),
]
Version = Annotated[int, Meta(ge=1, le=2**31 - 1)]


def check_label(value: str, field: str) -> None:
    if _CONTROL.search(value) or not value.strip():
        raise ValueError(f"{field} must be visible text without control characters")


def check_trigger(value: str) -> None:
    if not _TRIGGER.match(value):
        raise ValueError(
            "trigger must be an event type (order.created), a prefix ending in .* (order.*) or *"
        )


def check_description(value: str) -> None:
    if _CONTROL_BUT_LINE_BREAKS.search(value):
        raise ValueError("description must not contain control characters")


class Step(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One step of a workflow; steps run in the order given."""

    name: StepName
    action: Action
    config: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_label(self.name, "name")
        if not _ACTION.match(self.action):
            raise ValueError("action must be a dotted lowercase name such as http.request")


Steps = Annotated[
    list[Step],
    Meta(
        max_length=MAX_STEPS,
        description=f"At most {MAX_STEPS} steps and 64 KB of JSON; each step has its own name",
    ),
]


def check_steps(steps: list[Step]) -> None:
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise ValueError("steps: each step needs its own name")


class WorkflowCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: WorkflowName
    trigger: Trigger
    description: Description = ""
    enabled: bool = True
    steps: Steps = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        check_label(self.name, "name")
        check_trigger(self.trigger)
        check_description(self.description)
        check_steps(self.steps)


class WorkflowUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Changes to a workflow, based on the ``version`` the editor saw (stale: 409)."""

    version: Version
    name: WorkflowName | None = None
    trigger: Trigger | None = None
    description: Description | None = None
    enabled: bool | None = None
    steps: Steps | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_label(self.name, "name")
        if self.trigger is not None:
            check_trigger(self.trigger)
        if self.description is not None:
            check_description(self.description)
        if self.steps is not None:
            check_steps(self.steps)

    def changed_fields(self) -> list[str]:
        fields = ("name", "trigger", "description", "enabled", "steps")
        return [field for field in fields if getattr(self, field) is not None]


class Workflow(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str
    trigger: str
    enabled: bool
    steps: list[Step]
    version: int
    environment: Environment
    created_at: datetime
    updated_at: datetime
    created_by: str


class WorkflowDeleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True
