"""Workflows: create, list, get, update (optimistic, by version), delete.

Every workflow belongs to one organization and one environment; a credential reaches
only those of its own. Another organization's or environment's workflow is a 404 with
the same words as a workflow that never existed.
"""

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody, Parameter
from litestar.types import BeforeRequestHookHandler

from ventryx_shared.common import NO_FINAL_NEWLINE, Data, Page
from ventryx_shared.events import EVENT_TYPE_PATTERN, encode_bounded_json, is_event_type
from ventryx_shared.ids import new_id
from ventryx_shared.workflows import (
    MAX_STEPS_BYTES,
    TRIGGER_PATTERN,
    Step,
    Version,
    Workflow,
    WorkflowCreate,
    WorkflowDeleted,
    WorkflowUpdate,
    check_trigger,
)

from .. import audit, idempotency, quotas
from ..auth import lock_caller, require_credential
from ..db import Db
from ..errors import Conflict, InvalidRequest, UnprocessableEntity, no_such
from ..request_type import AppRequest
from .pagination import Limit, StartingAfter, cursor
from .reads import authorized_one, authorized_page

READ = {"scope": "workflows:read"}
WRITE = {"scope": "workflows:write"}
WorkflowId = Annotated[str, Parameter(description="The workflow's id, wf_…", max_length=64)]
_decode_steps = msgspec.json.Decoder(list[Step]).decode


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A workflow named '{name}' already exists in this environment.",
        code="workflow_name_taken",
        param="name",
    )


def _steps_json(steps: list[Step]) -> str:
    try:
        return encode_bounded_json(steps, MAX_STEPS_BYTES, "steps").decode()
    except ValueError as exc:
        raise UnprocessableEntity(str(exc), code="invalid_steps", param="steps") from None


def to_workflow(row: Any) -> Workflow:
    return Workflow(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        trigger=row["trigger"],
        enabled=row["enabled"],
        steps=_decode_steps(row["steps"]),
        version=row["version"],
        environment=row["environment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
    )


class WorkflowsController(Controller):
    path = "/workflows"
    tags = ["Workflows"]
    before_request: BeforeRequestHookHandler = require_credential

    @post("/", operation_id="createWorkflow", opt=WRITE, status_code=201)
    async def create_workflow(
        self, request: AppRequest, db: Db, data: JSONBody[WorkflowCreate]
    ) -> Response[Data[Workflow]]:
        """Create a workflow in the caller's environment; its name must be new there."""
        steps = _steps_json(data.steps)
        async with db.transaction():
            caller = await lock_caller(db, request)
            if replay := await idempotency.claim(db, request, caller.org_id):
                return replay
            await quotas.check_workflows(db, request, caller)
            row = await request.app.state.queries.insert_workflow(
                db,
                org_id=caller.org_id,
                id=new_id("wf"),
                environment=caller.environment,
                name=data.name,
                description=data.description,
                trigger=data.trigger,
                enabled=data.enabled,
                steps=steps,
                created_by=caller.actor_id,
            )
            if row is None:
                raise _name_taken(data.name)
            await audit.record_change(
                db,
                request,
                caller,
                "workflow.created",
                row["id"],
                caller.environment,
                name=row["name"],
                trigger=row["trigger"],
                version=row["version"],
            )
            body = Data(to_workflow(row))
            await idempotency.remember(db, request, caller.org_id, 201, msgspec.json.encode(body))
        return Response(body, status_code=201)

    @get("/", operation_id="listWorkflows", opt=READ)
    async def list_workflows(
        self,
        request: AppRequest,
        db: Db,
        limit: Limit = 20,
        starting_after: StartingAfter = None,
        enabled: FromQuery[bool | None] = None,
        trigger: Annotated[
            str | None,
            Parameter(
                max_length=128,
                description="Only workflows with exactly this trigger",
                schema_extra={"pattern": TRIGGER_PATTERN + NO_FINAL_NEWLINE},
            ),
        ] = None,
        event_type: Annotated[
            str | None,
            Parameter(
                max_length=128,
                description="Only workflows an event of this type would start",
                schema_extra={"pattern": EVENT_TYPE_PATTERN},
            ),
        ] = None,
        name: Annotated[
            str | None,
            Parameter(
                min_length=1,
                max_length=100,
                description="Only workflows whose name contains this text",
                schema_extra={"pattern": "^[^\\x00]+$"},
            ),
        ] = None,
    ) -> Page[Workflow]:
        """List the environment's workflows, newest first."""
        if trigger is not None:
            try:
                check_trigger(trigger)
            except ValueError as exc:
                raise InvalidRequest(str(exc), code="invalid_parameter", param="trigger") from None
        if event_type is not None and not is_event_type(event_type):
            raise InvalidRequest(
                "event_type must be a dotted lowercase name such as order.created",
                code="invalid_parameter",
                param="event_type",
            )
        if name is not None and ("\x00" in name or not name):
            raise InvalidRequest(
                "name must be text without NUL characters.", code="invalid_parameter", param="name"
            )
        return await authorized_page(
            db,
            request,
            request.app.state.queries.list_workflows,
            to_workflow,
            limit,
            enabled=enabled,
            trigger=trigger,
            event_type=event_type,
            name_contains=name,
            starting_after=cursor("wf", starting_after),
        )

    @get("/{workflow_id:str}", operation_id="getWorkflow", opt=READ)
    async def get_workflow(
        self, request: AppRequest, db: Db, workflow_id: WorkflowId
    ) -> Data[Workflow]:
        """Retrieve one workflow."""
        return await authorized_one(
            db,
            request,
            request.app.state.queries.get_workflow,
            to_workflow,
            "workflow",
            workflow_id,
        )

    @patch("/{workflow_id:str}", operation_id="updateWorkflow", opt=WRITE)
    async def update_workflow(
        self, request: AppRequest, db: Db, workflow_id: WorkflowId, data: JSONBody[WorkflowUpdate]
    ) -> Data[Workflow]:
        """Change a workflow from the version the editor saw; a stale version is 409."""
        changed = data.changed_fields()
        if not changed:
            raise UnprocessableEntity(
                "Nothing to change: send at least one field besides version.", code="empty_update"
            )
        steps = None if data.steps is None else _steps_json(data.steps)
        queries = request.app.state.queries
        async with db.transaction():
            caller = await lock_caller(db, request)
            try:
                row = await queries.update_workflow(
                    db,
                    org_id=caller.org_id,
                    environment=caller.environment,
                    id=workflow_id,
                    version=data.version,
                    name=data.name,
                    description=data.description,
                    trigger=data.trigger,
                    enabled=data.enabled,
                    steps=steps,
                )
            except asyncpg.UniqueViolationError:
                raise _name_taken(data.name or "") from None
            if row is None:
                current = await queries.workflow_version(
                    db, org_id=caller.org_id, environment=caller.environment, id=workflow_id
                )
                if current is None:
                    raise no_such("workflow", workflow_id)
                raise Conflict(
                    f"This workflow changed since version {data.version}: it is at version "
                    f"{current}. Fetch it again and reapply your edit.",
                    code="stale_version",
                    param="version",
                )
            await audit.record_change(
                db,
                request,
                caller,
                "workflow.updated",
                workflow_id,
                caller.environment,
                changed=changed,
                version=row["version"],
            )
        return Data(to_workflow(row))

    @delete("/{workflow_id:str}", operation_id="deleteWorkflow", opt=WRITE, status_code=200)
    async def delete_workflow(
        self,
        request: AppRequest,
        db: Db,
        workflow_id: WorkflowId,
        version: Annotated[
            Version | None,
            Parameter(
                ge=1,
                le=2**31 - 1,
                description="Delete only if the workflow is still at this version",
            ),
        ] = None,
    ) -> Data[WorkflowDeleted]:
        """Delete a workflow; events that matched it keep its id."""
        queries = request.app.state.queries
        async with db.transaction():
            caller = await lock_caller(db, request)
            row = await queries.delete_workflow(
                db,
                org_id=caller.org_id,
                environment=caller.environment,
                id=workflow_id,
                version=version,
            )
            if row is None:
                current = await queries.workflow_version(
                    db, org_id=caller.org_id, environment=caller.environment, id=workflow_id
                )
                if current is None:
                    raise no_such("workflow", workflow_id)
                raise Conflict(
                    f"This workflow changed since version {version}: it is at version {current}.",
                    code="stale_version",
                    param="version",
                )
            await audit.record_change(
                db,
                request,
                caller,
                "workflow.deleted",
                workflow_id,
                caller.environment,
                name=row["name"],
                version=row["version"],
            )
        return Data(WorkflowDeleted(id=workflow_id))
