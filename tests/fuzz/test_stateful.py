"""Schemathesis's stateful phase: sequences of valid calls chained by links (list → item → write with its ETag).

The links are declared by the harness (`with_links`), and every scenario starts from the seeded company
(tests/fuzz/world.py), so the chains work on real handovers, items, grants, alerts and follow-ups. Admin token,
every check, the same per-operation exclusions as the stateless run. SQLite only, like the rest of the fuzz suite.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import HealthCheck, assume, settings

from app.core.config import Settings
from tests.fuzz.harness import excluded_checks, linked_schema, token, unique_idempotency_key
from tests.fuzz.world import World

APIWorkflow: Any = linked_schema.as_state_machine()


class HandoverWorkflow(APIWorkflow):  # type: ignore[misc,valid-type]
    headers: ClassVar[dict[str, str]] = {}
    world: ClassVar[World | None] = None
    reached: ClassVar[set[str]] = set()  # operations on an existing object that answered 2xx

    def setup(self) -> None:
        # Every scenario starts from the seeded company, so a failing one replays (and shrinks) the same way.
        assert self.world is not None
        self.world.reset()
        self.world.dirty = True

    def before_call(self, case: Any) -> None:
        # Inferred links also follow nullable fields (a manual grant's handover_id is null), which would send
        # ".../handovers/None/...": not a request any client makes, so that step is discarded.
        assume(all(value is not None for value in (case.path_parameters or {}).values()))
        unique_idempotency_key(case)

    def after_call(self, response: Any, case: Any) -> None:
        super().after_call(response, case)
        if 200 <= response.status_code < 300 and case.path_parameters:
            self.reached.add(f"{case.operation.method.upper()} {case.operation.path}")

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"headers": dict(self.headers)}

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
        case.validate_response(
            response,
            additional_checks=additional_checks,
            excluded_checks=excluded_checks(case.operation.method, case.operation.path),
            headers=kwargs.get("headers"),
            transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )


def test_stateful(fuzz_world: World, fuzz_settings: Settings) -> None:
    HandoverWorkflow.world = fuzz_world
    HandoverWorkflow.reached = set()
    HandoverWorkflow.headers = {"Authorization": f"Bearer {token(fuzz_settings, 'admin')}"}
    HandoverWorkflow.run(
        settings=settings(
            max_examples=60,
            stateful_step_count=10,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links did their job: the scenarios worked on the seeded objects, not only on ids they made up.
    # How many depends on what the seeded ids and earlier modules left (11 alone, 7 in a full run with 30
    # examples), so the bound is the least a full run reached, with twice the examples for margin.
    assert len(HandoverWorkflow.reached) >= 7, HandoverWorkflow.reached
