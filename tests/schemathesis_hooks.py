"""Schemathesis hooks for tests/test_openapi_fuzz.py (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.hook
def map_query(context, query):
    # The event stream follows new events until the client leaves, so a generated request
    # would only end at the fuzzer's timeout; with follow=false it replays and ends.
    if context.operation is not None and context.operation.path == "/v1/events/stream":
        query = {**(query or {}), "follow": "false"}
    return query
