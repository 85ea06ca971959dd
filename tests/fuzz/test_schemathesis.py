"""Schemathesis over every operation, in-process, with each role's token: all checks, fixed seed, bounded examples.

SQLite only: the checks are about the HTTP contract, which does not depend on the database, and a PostgreSQL run
would double the time. The admin token gets every phase (examples, coverage, fuzzing; 25 examples per operation),
the other roles examples and fuzzing (8) on the operations their scopes reach: the 403s of the others are the
role matrix's (tests/test_role_matrix.py). The stateful run is in test_stateful.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

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

# Fixtures outlive hypothesis's examples on purpose: the seeded world is shared by every case.
SHARED_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def call(case: Any, role: str, settings_: Settings) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    if not reachable(role, method, path):
        pytest.skip(f"{role} lacks the scope")
    unique_idempotency_key(case)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token(settings_, role)}"},
        excluded_checks=excluded_checks(method, path),
    )


@full_schema.parametrize()
@SHARED_FIXTURES
def test_admin(case: Any, fuzz_world: Any, fuzz_settings: Settings) -> None:
    call(case, "admin", fuzz_settings)


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"admin"}))
@light_schema.parametrize()
@SHARED_FIXTURES
def test_role(case: Any, role: str, fuzz_world: Any, fuzz_settings: Settings) -> None:
    call(case, role, fuzz_settings)
