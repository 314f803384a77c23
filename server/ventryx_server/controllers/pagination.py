"""``limit`` and ``starting_after`` for every list: newest first, by time-sortable id."""

from typing import Annotated, Any

from litestar.params import Parameter

from ventryx_shared.ids import is_id

from ..errors import InvalidRequest

Limit = Annotated[int, Parameter(ge=1, le=100, description="How many objects, 1 to 100.")]
StartingAfter = Annotated[
    str | None,
    Parameter(max_length=64, description="The id of the last object of the previous page."),
]


def cursor(prefix: str, starting_after: str | None) -> str | None:
    if starting_after is not None and not is_id(prefix, starting_after):
        raise InvalidRequest(
            f"starting_after must be an id of the form {prefix}_…",
            code="invalid_cursor",
            param="starting_after",
        )
    return starting_after


def page(items: list[Any], limit: int) -> tuple[list[Any], bool]:
    """Queries fetch limit + 1 rows; the extra one only says there is more."""
    return items[:limit], len(items) > limit
