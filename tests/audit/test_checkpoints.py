"""Signed checkpoints of the audit head: truncation, rewritten hashes and forged checkpoints are found; verification
walks only what the last verified checkpoint does not cover; the worker and the batch paths take checkpoints and send
them out as `audit.checkpoint` events. Tampering is done with raw SQL, as a database writer would."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.audit import anchor, chain
from app.audit import service as audit
from app.audit.models import AuditCheckpoint, AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.core.keys import key_id
from app.main import create_app
from app.notify.models import OutboxMessage
from app.worker import checkpoint_audit, run_once
from tests.conftest import START, make_settings
from tests.support.company import EFFECTIVE, clients, employees, open_for, second_leaver

SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
SEED_B64 = base64.b64encode(SEED).decode()
INTERVAL = dt.timedelta(seconds=301)  # just past the default checkpoint interval


@pytest.fixture(scope="module")
def anchored_settings(database_url: str) -> Settings:
    return make_settings(database_url, audit_signing_key=SEED_B64, webhook_allow_private=True)


@pytest.fixture(scope="module")
def anchored_app(anchored_settings: Settings, clock: ManualClock) -> Iterator[FastAPI]:
    app = create_app(anchored_settings, clock=clock)
    yield app
    app.state.db.dispose()


@pytest.fixture
def ac(anchored_app: FastAPI, db: Database) -> Iterator[TestClient]:
    """A client of the app that holds the signing key; `db` empties the tables after the test."""
    with TestClient(anchored_app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def worker_db(anchored_settings: Settings, db: Database) -> Iterator[Database]:
    """The worker's own engine, as `handover worker` has."""
    database = Database(anchored_settings)
    yield database
    database.dispose()


def _seed(ac: TestClient, auth: Any, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        r = ac.put(
            f"/v1/employees/e{i}",
            json={"name": f"E{i}", "email": f"e{i}@example.com", "seniority": 2},
            headers=auth("hr"),
        )
        assert r.status_code == 201, r.text


def _checkpoint(worker_db: Database, clock: ManualClock) -> int:
    return checkpoint_audit(worker_db, clock, threading.Event())


def _verify(ac: TestClient, auth: Any, **params: Any) -> dict[str, Any]:
    r = ac.get("/v1/audit/verify", params=params, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _sql(db: Database, statement: str, **params: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _rehash_from(db: Database, seq: int) -> None:
    """What an attacker with database access does after an edit: recompute every hash from `seq` on."""
    with db.engine.begin() as conn:
        rows = conn.execute(
            select(AuditEntry.__table__).where(AuditEntry.seq >= seq - 1).order_by(AuditEntry.seq)
        ).all()
        prev = rows[0].hash if rows[0].seq < seq else chain.GENESIS_HASH
        for r in rows:
            if r.seq < seq:
                continue
            occurred = r.occurred_at if r.occurred_at.tzinfo else r.occurred_at.replace(tzinfo=dt.UTC)
            data = r.data if isinstance(r.data, dict) else json.loads(r.data)
            content = chain.EntryContent(r.seq, occurred, r.actor, r.action, r.entity_type, r.entity_id, data)
            digest = chain.entry_hash(prev, content)
            conn.execute(
                text("UPDATE audit_entry SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": digest, "s": r.seq},
            )
            prev = digest


def _append_forged(db: Database, actor: str = "hr:test-hr") -> None:
    """An entry written straight into the table, its hash correctly chained on the stored head."""
    with db.engine.begin() as conn:
        seq, prev = conn.execute(text("SELECT seq, hash FROM audit_entry ORDER BY seq DESC LIMIT 1")).one()
        content = chain.EntryContent(seq + 1, START, actor, "employee.deleted", "employee", "e0", {})
        conn.execute(
            AuditEntry.__table__.insert(),
            {
                "seq": seq + 1,
                "occurred_at": START,
                "actor": actor,
                "action": "employee.deleted",
                "entity_type": "employee",
                "entity_id": "e0",
                "data": {},
                "prev_hash": prev,
                "hash": chain.entry_hash(prev, content),
            },
        )


def _checkpoints(db: Database) -> list[AuditCheckpoint]:
    with db.session(write=False) as s:
        return list(s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


# ---- the worker's checkpoints and the external copy ----------------------------------------------------------------


def test_the_worker_signs_a_checkpoint_and_sends_it_to_subscribers(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    r = ac.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["audit.checkpoint"]},
        headers=auth(),
    )
    assert r.status_code == 201, r.text
    endpoint = r.json()["id"]
    _seed(ac, auth, 3)  # with the endpoint's own entry: four
    done = run_once(worker_db, clock)
    assert done["checkpoint_audit"] == 1
    with worker_db.session(write=False) as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.event_type == "audit.checkpoint")).all()
        head = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == 4))
    assert [m.endpoint_id for m in rows] == [endpoint]
    data = rows[0].payload["data"]
    assert data["seq"] == data["count"] == 4 and data["head_hash"] == head
    assert data["verified"] is True and data["reason"] == "worker" and data["key_id"] == key_id(KEY.public_key())
    # The receiver checks it with the public key alone: the signed text carries the claims.
    KEY.public_key().verify(base64.b64decode(data["signature"]), data["signed"].encode())
    domain, claims = data["signed"].split("\n", 1)
    assert domain == anchor.DOMAIN and json.loads(claims)["head_hash"] == head
    [cp] = _checkpoints(worker_db)
    assert cp.id == data["checkpoint_id"]

    # Not again until the head moves and the interval passes (or enough entries are added).
    assert _checkpoint(worker_db, clock) == 0
    _seed(ac, auth, 1, start=3)
    assert _checkpoint(worker_db, clock) == 0
    clock.advance(INTERVAL)
    assert _checkpoint(worker_db, clock) == 1
    assert [c.seq for c in _checkpoints(worker_db)] == [4, 5]


def test_without_a_key_nothing_is_anchored(client: TestClient, auth: Any, db: Database, clock: ManualClock) -> None:
    _seed(client, auth, 1)
    assert checkpoint_audit(db, clock, threading.Event()) == 0
    body = client.get("/v1/audit/verify", headers=auth("auditor")).json()
    assert body["ok"] is True and body["anchored"] is False and body["checkpoint"] is None
    assert body["unanchored"] == 1 and body["full"] is True and _checkpoints(db) == []


# ---- incremental verification --------------------------------------------------------------------------------------


def test_verification_reads_only_the_entries_after_the_last_verified_checkpoint(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    _seed(ac, auth, 5)
    assert _checkpoint(worker_db, clock) == 1
    _seed(ac, auth, 3, start=5)
    body = _verify(ac, auth)
    assert body["ok"] is True and body["anchored"] is True and body["full"] is False
    assert body["verified_from"] == 5 and body["verified_entries"] == 3 and body["unanchored"] == 3
    assert body["count"] == body["total"] == 8 and body["first_broken"] is None
    assert body["checkpoint"]["seq"] == 5 and body["checkpoint"]["verified"] is True
    whole = _verify(ac, auth, full="true")
    assert whole["ok"] is True and whole["full"] is True
    assert whole["verified_from"] == 0 and whole["verified_entries"] == 8

    clock.advance(INTERVAL)
    assert _checkpoint(worker_db, clock) == 1
    again = _verify(ac, auth)
    assert again["verified_from"] == 8 and again["verified_entries"] == 0 and again["unanchored"] == 0


# ---- tampering -----------------------------------------------------------------------------------------------------


def test_truncating_the_newest_entries_is_detected(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    _seed(ac, auth, 5)
    assert _checkpoint(worker_db, clock) == 1
    _sql(worker_db, "DELETE FROM audit_entry WHERE seq > 3")
    with worker_db.session(write=False) as s:
        assert audit.verify(s).ok  # the chain alone cannot tell: what is left is a valid chain
    body = _verify(ac, auth)
    assert body["ok"] is False and body["anchored"] is False
    assert body["first_broken"]["seq"] == 4 and "truncated" in body["first_broken"]["reason"]
    [error] = body["checkpoint_errors"]
    assert error["seq"] == 5 and "deleted" in error["reason"]

    # The real writer carries on from the truncated head: still found, and the worker signs nothing over it.
    _seed(ac, auth, 3, start=5)
    clock.advance(INTERVAL)
    assert _checkpoint(worker_db, clock) == 0
    assert len(_checkpoints(worker_db)) == 1
    body = _verify(ac, auth)
    assert body["ok"] is False and body["full"] is True
    assert "rewritten" in body["first_broken"]["reason"]


def test_rewritten_hashes_before_a_checkpoint_are_detected(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    _seed(ac, auth, 3)
    assert _checkpoint(worker_db, clock) == 1
    _seed(ac, auth, 3, start=3)
    clock.advance(INTERVAL)
    assert _checkpoint(worker_db, clock) == 1
    _sql(worker_db, "UPDATE audit_entry SET actor = 'admin:someone-else' WHERE seq = 5")
    _rehash_from(worker_db, 5)
    with worker_db.session(write=False) as s:
        assert audit.verify(s).ok  # a consistent chain again: only the signed head disagrees
    body = _verify(ac, auth)
    assert body["ok"] is False and body["full"] is True  # the last verified checkpoint no longer holds
    assert body["first_broken"]["seq"] == 4 and "entries 4..6 were rewritten" in body["first_broken"]["reason"]
    assert [e["seq"] for e in body["checkpoint_errors"]] == [6]


def test_a_checkpoint_with_a_bad_signature_is_detected(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    _seed(ac, auth, 4)
    assert _checkpoint(worker_db, clock) == 1
    # Moving the signed head back to hide the last entry: the signature no longer covers the claims.
    _sql(
        worker_db,
        "UPDATE audit_checkpoint SET seq = 3, entry_count = 3,"
        " head_hash = (SELECT hash FROM audit_entry WHERE seq = 3)",
    )
    body = _verify(ac, auth)
    assert body["ok"] is False and body["anchored"] is False
    assert "signature does not verify" in body["checkpoint_errors"][0]["reason"]


def test_a_checkpoint_signed_by_another_key_is_not_trusted(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    """Truncate, delete the real checkpoint and sign the shorter head with one's own key: not trusted."""
    _seed(ac, auth, 4)
    assert _checkpoint(worker_db, clock) == 1
    _sql(worker_db, "DELETE FROM audit_entry WHERE seq > 2")
    _sql(worker_db, "DELETE FROM audit_checkpoint")
    forger = anchor.keyring(Ed25519PrivateKey.generate(), [])
    with worker_db.session(write=False) as s:
        head = s.scalar(select(AuditEntry.hash).where(AuditEntry.seq == 2))
    assert head is not None and forger.signer_id is not None
    claims = anchor.Claims(2, head, 2, START, forger.signer_id, True, "worker")
    _sql(
        worker_db,
        "INSERT INTO audit_checkpoint (seq, head_hash, entry_count, taken_at, key_id, verified, reason, signature)"
        " VALUES (2, :h, 2, :at, :k, :v, 'worker', :sig)",
        h=head,
        at=START,
        k=forger.signer_id,
        v=True,
        sig=forger.sign(claims),
    )
    body = _verify(ac, auth)
    assert body["ok"] is False and body["anchored"] is False and body["full"] is True
    assert "not trusted" in body["checkpoint_errors"][0]["reason"]


def test_an_appended_forgery_is_reported_as_not_yet_anchored(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    """The limit of checkpoints: an entry appended after the last one, with a correctly chained hash, looks like a
    real one. What verification can say is that no signature covers it yet; the next checkpoint, signed by the real
    writer over the stored head, will cover it too (only the event copies show which checkpoint first did)."""
    _seed(ac, auth, 3)
    assert _checkpoint(worker_db, clock) == 1
    _append_forged(worker_db)
    body = _verify(ac, auth)
    assert body["ok"] is True and body["anchored"] is True
    assert body["unanchored"] == 1 and body["verified_entries"] == 1 and body["checkpoint"]["seq"] == 3


def test_a_deletion_before_the_last_verified_checkpoint_is_found_without_a_walk(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    _seed(ac, auth, 6)
    assert _checkpoint(worker_db, clock) == 1
    _sql(worker_db, "DELETE FROM audit_entry WHERE seq = 2")
    body = _verify(ac, auth)
    assert body["ok"] is False and body["verified_entries"] == 0 and body["full"] is False
    assert body["first_broken"]["seq"] == 2 and "deleted" in body["first_broken"]["reason"]


def test_an_edit_in_place_before_the_last_verified_checkpoint_needs_a_full_walk(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    """The price of walking only new entries: an entry edited without touching any hash stays unseen until a full
    walk reads it (its stored hash no longer matches its content)."""
    _seed(ac, auth, 4)
    assert _checkpoint(worker_db, clock) == 1
    _sql(worker_db, "UPDATE audit_entry SET actor = 'admin:someone-else' WHERE seq = 2")
    assert _verify(ac, auth)["ok"] is True
    whole = _verify(ac, auth, full="true")
    assert whole["ok"] is False and whole["first_broken"]["seq"] == 2 and "edited" in whole["first_broken"]["reason"]


def test_checkpoints_of_a_previous_key_verify_while_it_is_trusted(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock, anchored_settings: Settings
) -> None:
    _seed(ac, auth, 3)
    assert _checkpoint(worker_db, clock) == 1
    old_public = base64.b64encode(KEY.public_key().public_bytes_raw()).decode()
    rotated = anchored_settings.model_copy(
        update={"audit_signing_key": None, "audit_signing_key_file": None, "audit_trusted_public_keys": None}
    )
    new_seed = base64.b64encode(bytes(range(1, 33))).decode()
    with worker_db.session(write=False) as s:
        untrusted = audit.verify(s, make_settings(anchored_settings.database_url, audit_signing_key=new_seed))
        trusted = audit.verify(
            s,
            make_settings(
                anchored_settings.database_url, audit_signing_key=new_seed, audit_trusted_public_keys=old_public
            ),
        )
        verify_only = audit.verify(s, rotated.model_copy(update={"audit_trusted_public_keys": old_public}))
    assert not untrusted.ok and "not trusted" in untrusted.checkpoint_errors[0].reason
    assert trusted.ok and trusted.anchored and trusted.verified_from == 3
    assert verify_only.ok and verify_only.anchored  # a verifier needs only the public key


# ---- the batch paths -----------------------------------------------------------------------------------------------


def test_joint_plan_joint_approval_and_the_execution_batch_take_checkpoints(
    ac: TestClient, auth: Any, worker_db: Database, clock: ManualClock
) -> None:
    r = ac.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["audit.checkpoint"]},
        headers=auth(),
    )
    assert r.status_code == 201, r.text
    assert ac.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr")).status_code == 200
    assert ac.post("/v1/clients/batch", json={"items": clients()}, headers=auth("hr")).status_code == 200
    second_leaver(ac, auth)
    ids = [open_for(ac, auth, "e0"), open_for(ac, auth, "e1")]

    def head() -> tuple[int, str]:
        with worker_db.session(write=False) as s:
            row = s.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).one()
        return int(row[0]), str(row[1])

    heads = []
    r = ac.post("/v1/handover-plans", json={"handover_ids": ids}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    heads.append(head())
    r = ac.post("/v1/handover-approvals", json={"handover_ids": ids}, headers=auth())
    assert r.status_code == 200, r.text
    heads.append(head())
    clock.set(EFFECTIVE)
    done = run_once(worker_db, clock)
    assert done["execute_due_handovers"] == 2 and done["checkpoint_audit"] == 1
    heads.append(head())
    cps = _checkpoints(worker_db)
    assert [(c.reason, c.verified) for c in cps] == [
        ("joint_plan", False),
        ("joint_approval", False),
        ("execution", False),
        ("worker", True),
    ]
    assert [(c.seq, c.head_hash) for c in cps[:3]] == heads and (cps[3].seq, cps[3].head_hash) == heads[2]
    with worker_db.session(write=False) as s:
        sent = s.scalars(
            select(OutboxMessage).where(OutboxMessage.event_type == "audit.checkpoint").order_by(OutboxMessage.id)
        ).all()
    assert [m.payload["data"]["checkpoint_id"] for m in sent] == [c.id for c in cps]
    body = _verify(ac, auth)
    assert body["ok"] is True and body["anchored"] is True and body["unanchored"] == 0


def test_a_single_approval_takes_no_checkpoint(ac: TestClient, auth: Any, worker_db: Database) -> None:
    assert ac.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr")).status_code == 200
    assert ac.post("/v1/clients/batch", json={"items": clients()}, headers=auth("hr")).status_code == 200
    hid = open_for(ac, auth, "e0")
    assert ac.post(f"/v1/handovers/{hid}/plan", headers=auth("hr")).status_code == 200
    assert ac.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1")).status_code == 200
    assert _checkpoints(worker_db) == []
