"""The webhook contract: every outbound event type is in openapi.json's `webhooks`, and what the workflow really
emits validates against it.

The workflow runs for real (TestClient, the injected clock, the worker's pass): open, plan, approve (the access
windows go out as `access.granted`), execute, undo, and a second handover cancelled. Each outbox row's body, the
exact bytes a receiver gets, is validated (JSON Schema 2020-12, jsonschema-rs) against the schema the generated
openapi.json gives its type; the schemas there are the payload models' own, and every example validates too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.cli import render_openapi
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.notify import events as contract
from app.notify import schemas
from app.notify.models import OutboxMessage
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, open_for, plan
from tests.support.events import subscribe

ROOT = Path(__file__).resolve().parents[2]
JSON_BODY = "application/json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The contract as `handover openapi` writes it (and as committed: tests/test_contract.py)."""
    return json.loads(render_openapi(create_app(Settings())))


def validator(document: dict[str, Any], event_type: str) -> Any:
    """The JSON Schema of a delivery of `event_type`, with the document's components to resolve its $refs."""
    body = document["webhooks"][event_type]["post"]["requestBody"]["content"][JSON_BODY]["schema"]
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": document["components"], **body}
    return jsonschema_rs.validator_for(root)


def test_every_event_type_has_a_webhook_with_schema_example_and_signature(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert sorted(document["webhooks"]) == sorted(contract.EVENT_TYPES)  # one missing (or extra) fails here
    # The list endpoints subscribe with is the same list, "*" apart; access.granted is subscribable.
    assert set(schemas.EventType.__args__) == {*contract.EVENT_TYPES, "*"}  # type: ignore[attr-defined]
    assert "access.granted" in contract.EVENT_TYPES
    for event_type in contract.EVENT_TYPES:
        op = document["webhooks"][event_type]["post"]
        assert op["summary"] and op["description"] and op["security"] == []
        assert {p["name"] for p in op["parameters"] if p["in"] == "header"} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
        assert any(code.startswith("2") for code in op["responses"])
        media = op["requestBody"]["content"][JSON_BODY]
        errors = [e.message for e in validator(document, event_type).iter_errors(media["example"])]
        assert errors == [], (event_type, errors)
        assert media["example"]["type"] == event_type


def test_the_schemas_are_the_payload_models_own(document: dict[str, Any]) -> None:
    """The `data` schema of each type is its model's serialisation schema (refs aside), so they cannot drift."""
    components = document["components"]["schemas"]
    for event_type, model in contract.EVENT_MODELS.items():
        envelope = components[contract.envelope_name(event_type)]
        assert envelope["properties"]["data"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert envelope["properties"]["type"]["const"] == event_type
        own = model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        published = components[model.__name__]
        assert set(published["properties"]) == set(own["properties"]), event_type
        assert published.get("required") == own.get("required"), event_type
        assert published["additionalProperties"] is False


def _deliveries(db: Database) -> list[dict[str, Any]]:
    with db.session(write=False) as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.category == "event").order_by(OutboxMessage.id)
        ).all()
        # The row's body is what the worker signs and POSTs.
        return [dict(r.payload) for r in rows]


def test_real_events_of_the_workflow_validate_against_the_contract(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    settings: Settings,
    company: Any,
    document: dict[str, Any],
) -> None:
    subscribe(db, settings)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    hid = r.json()["id"]
    created = document["paths"]["/v1/handovers"]["post"]["responses"]["201"]["headers"]
    assert {"ETag", "Location"} <= set(created)  # documented, and sent
    assert r.headers["ETag"] and r.headers["Location"] == f"/v1/handovers/{hid}"
    plan(client, auth, hid)
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    r = client.post(f"/v1/handovers/{hid}/undo", json={"reason": "back"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    other = open_for(client, auth, "e1")
    r = client.post(f"/v1/handovers/{other}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text

    sent = _deliveries(db)
    kinds = [d["type"] for d in sent]
    for expected in (
        "handover.created",
        "handover.planned",
        "handover.approved",
        "access.granted",
        "handover.executed",
        "client.reassigned",
        "handover.undone",
        "handover.cancelled",
    ):
        assert expected in kinds, (expected, kinds)
    for delivery in sent:
        errors = [e.message for e in validator(document, delivery["type"]).iter_errors(delivery)]
        assert errors == [], (delivery["type"], errors, delivery)
        # And the payload model takes it back unchanged.
        model = contract.EVENT_MODELS[delivery["type"]]
        assert model.model_validate(delivery["data"]).model_dump(mode="json", by_alias=True) == delivery["data"]
    granted = [d["data"] for d in sent if d["type"] == "access.granted"]
    levels = {g["level"] for d in granted for g in d["grants"]}
    assert levels >= {"shadow"} and levels & {"owner", "interim"}
    # A delivery that drifted from the contract is refused by the same check.
    bad = next(d for d in sent if d["type"] == "access.granted")
    drifted = {**bad, "data": {**bad["data"], "grants": [{**bad["data"]["grants"][0], "level": "boss"}]}}
    assert not validator(document, "access.granted").is_valid(drifted)


def test_every_batched_event_of_the_workflow_is_built_through_its_model() -> None:
    """`emit_batches` checks each batch through the type's model only when given one: a caller that forgets it
    sends an unchecked mapping (the interim takeover and its reversal once did). Every caller outside the outbox
    passes `model=`."""
    import ast

    missing = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.parts[-2] == "notify" and path.name == "service.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "emit_batches"
                and not any(k.arg == "model" for k in node.keywords)
            ):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == []
