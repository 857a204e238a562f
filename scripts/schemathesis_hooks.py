"""schemathesis hooks for scripts/schemathesis.sh: the one rule of thresh's request schemas
that JSON Schema cannot state.

`min_tokens` may not exceed the `max_tokens` (or `max_completion_tokens`) of the same
request: a 400 naming `min_tokens`, documented in the field's description. JSON Schema has no
keyword comparing two fields, so generated bodies that break the rule are dropped here rather
than reported as schema-valid requests rejected.
"""

import schemathesis


def _int(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@schemathesis.hook
def filter_case(context, case):
    # filter_case, not filter_body: the coverage phase applies only case hooks.
    body = case.body
    if not isinstance(body, dict):
        return True
    low = _int(body.get("min_tokens"))
    high = _int(body.get("max_tokens"))
    if high is None:
        high = _int(body.get("max_completion_tokens"))
    return low is None or high is None or low <= high
