"""schemathesis hooks for ferroserve's run (loaded through SCHEMATHESIS_HOOKS by tests/python/test_openapi.py).

A request whose own deadline (`timeout_ms`, `x-ferroserve-timeout-ms`) passes before it is served gets 504 by
design: the status gRPC's DEADLINE_EXCEEDED maps to, covered by the Rust end-to-end tests. Fuzzed deadlines of
a millisecond would only ever test that, so every generated deadline is replaced by a minute before the call;
the validation of the field (0, not a number) still runs on what the fuzzer sends in negative cases, which are
not valid integers to begin with.
"""

import schemathesis

DEADLINE_MS = 60_000


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("timeout_ms"), int) and body["timeout_ms"] >= 1:
        body["timeout_ms"] = DEADLINE_MS
    headers = case.headers
    if headers and "x-ferroserve-timeout-ms" in headers and str(headers["x-ferroserve-timeout-ms"]).isdigit():
        if int(headers["x-ferroserve-timeout-ms"]) >= 1:
            headers["x-ferroserve-timeout-ms"] = str(DEADLINE_MS)
