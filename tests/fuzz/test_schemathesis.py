"""Schemathesis over every operation, in-process, with each role's token: all checks, fixed seed, bounded examples.

SQLite only: the checks are about the HTTP contract, which does not depend on the database, and a PostgreSQL run
would double the time. The admin token gets every phase (examples, coverage, fuzzing; 20 examples per operation),
the other roles examples and fuzzing (5) on the operations their scopes reach: the 403s of the others are the
role matrix's (tests/test_role_matrix.py). The stateful run is in test_stateful.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth

from app.core.config import Settings
from tests.fuzz.harness import (
    ROLES,
    excluded_checks,
    full_schema,
    light_schema,
    reachable,
    token,
    unique_idempotency_key,
)
from tests.fuzz.world import World

# Fixtures outlive hypothesis's examples on purpose: the seeded world is shared by every case.
SHARED_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


# ignored_auth re-sends every 2xx case without its token and with a bad one. Schemathesis's own runner does that
# once per operation ("enforcement is a property of the operation"); called from pytest it would do it for every
# case, tripling the requests. So, like the runner: once per operation and role, until a 2xx has been probed.
AUTH_CONFIRMED: set[tuple[str, str]] = set()


def call(case: Any, role: str, settings_: Settings, world: World) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    if not reachable(role, method, path):
        pytest.skip(f"{role} lacks the scope")
    if method != "GET" or path.endswith("/ack"):  # the acknowledgment link is a GET that records
        world.dirty = True
    unique_idempotency_key(case)
    excluded = excluded_checks(method, path)
    if (role, case.operation.label) in AUTH_CONFIRMED:
        excluded.append(ignored_auth)
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {token(settings_, role)}"},
        excluded_checks=excluded,
    )
    if 200 <= response.status_code < 300:
        AUTH_CONFIRMED.add((role, case.operation.label))


@full_schema.parametrize()
@SHARED_FIXTURES
def test_admin(case: Any, fuzz_world: World, fuzz_settings: Settings) -> None:
    call(case, "admin", fuzz_settings, fuzz_world)


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"admin"}))
@light_schema.parametrize()
@SHARED_FIXTURES
def test_role(case: Any, role: str, fuzz_world: World, fuzz_settings: Settings) -> None:
    call(case, role, fuzz_settings, fuzz_world)
