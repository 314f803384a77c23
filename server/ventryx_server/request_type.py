"""The request type hooks and handlers receive: Litestar's ``Request`` with its parameters
filled in as this server uses it."""

from typing import TypeAlias

from litestar import Request
from litestar.datastructures import State

# No authentication middleware runs (auth.py's before-request hook keeps the credential in
# the scope's state), so Litestar's request.user and request.auth hold nothing: typed
# ``object``, any use of them fails the type check.
AppRequest: TypeAlias = Request[object, object, State]
