"""The request type hooks and handlers receive (Litestar's ``Request`` with its parameters
filled in as this server uses it), and the scope type middleware serves."""

from typing import Final, TypeAlias

from litestar import Request
from litestar.datastructures import State
from litestar.enums import ScopeType

# No authentication middleware runs (auth.py's before-request hook keeps the credential in
# the scope's state), so Litestar's request.user and request.auth hold nothing: typed
# ``object``, any use of them fails the type check.
AppRequest: TypeAlias = Request[object, object, State]

# What middleware compares scope["type"] with, so that the type checker narrows the scope
# to an HTTP one. A module constant: reading ScopeType.HTTP itself costs about 1 µs on
# Python 3.11, against 0.15 µs for the comparison.
HTTP_SCOPE: Final = ScopeType.HTTP
