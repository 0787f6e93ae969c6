"""A property-based fuzz run of the OpenAPI schema (schemathesis) against the app in-process (ASGI):
every operation, as an admin (who reaches the most code) and as a grid leader, a bounded number of
derandomised examples each. No answer may be a 5xx, break its documented schema or content type."""

from __future__ import annotations

import os
from typing import Any

from tests.security.test_matrix import CASES
from tests.security.world import World
from tests.support.require import require

# dev extra; CI installs it (see pyproject.toml). A missing one skips locally and fails under CI=true
# (tests/support/require.py), which pytest.importorskip would not.
try:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.openapi.checks import JsonSchemaError  # noqa: F401  (the failure a schema violation raises)
    from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
except ImportError:
    HAVE_SCHEMATHESIS = False
else:
    HAVE_SCHEMATHESIS = True

#: examples per operation and caller: ~35 operations x 2 callers x 2 databases stay well under 90 s
MAX_EXAMPLES = int(os.environ.get("GRIDPATROL_FUZZ_EXAMPLES", "8"))
CALLERS = ("admin1", "leader-g1")
#: streams never end by themselves; the matrix checks their access
STREAMS = frozenset(key for key, case in CASES.items() if case.stream)


def _fuzz_operation(world: World, operation: Any, headers: dict[str, str]) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        try:
            response = case.call(headers=headers)
        except Exception as err:  # the test client re-raises what the app did not handle: a 500
            failures.append(f"{operation.label}: unhandled {type(err).__name__}: {str(err)[:300]}")
            return
        # a 503 with our error body is a deliberate "not available here" (no worker reads the camera, no
        # credentials key for an import, no previewer in this app), not a crash: its body is still checked
        deliberate = response.status_code == 503 and "error" in (response.json() if response.content else {})
        checks = [response_schema_conformance, content_type_conformance]
        try:
            case.validate_response(response, checks=checks if deliberate else [not_a_server_error, *checks])
        except Exception as err:  # collect every operation's failure, not only the first
            failures.append(f"{operation.label}: {response.status_code} {type(err).__name__}: {str(err)[:500]}")

    run()
    return failures


def test_the_schema_fuzz_finds_no_server_error_and_no_schema_violation(world: World) -> None:
    require(HAVE_SCHEMATHESIS, "schemathesis (the dev extra: pip install -e '.[dev]')")
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" in STREAMS:
            continue
        operations += 1
        for caller in CALLERS:
            failures += _fuzz_operation(world, operation, world.bearer(caller))
    assert operations > 20
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(dict.fromkeys(failures))
