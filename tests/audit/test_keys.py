"""The audit signing key from settings, and the signed claims (pure)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from app.audit import anchor
from app.audit import service as audit
from app.core.config import Settings
from app.core.keys import key_id
from tests.conftest import START

SEED = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PROD = {"environment": "production", "jwt_secret": "p" * 40}


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_production_refuses_to_start_without_a_signing_key() -> None:
    with pytest.raises(ValidationError, match="HANDOVER_AUDIT_SIGNING_KEY .* is required in production"):
        Settings(**PROD)
    Settings(**PROD, audit_signing_key=base64.b64encode(SEED).decode())
    Settings(
        environment="test", jwt_secret="p" * 40
    )  # elsewhere checkpoints are optional: verification says anchored: false


def test_pem_base64_and_file_name_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    path.write_text(_pem(KEY))
    ids = {
        audit.keyring(Settings(audit_signing_key=_pem(KEY))).signer_id,
        audit.keyring(Settings(audit_signing_key=base64.b64encode(SEED).decode())).signer_id,
        audit.keyring(Settings(audit_signing_key=base64.urlsafe_b64encode(SEED).decode().rstrip("="))).signer_id,
        audit.keyring(Settings(**PROD, audit_signing_key_file=path)).signer_id,
    }
    assert ids == {key_id(KEY.public_key())}


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"audit_signing_key": "c2hvcnQ="}, "32 bytes"),
        ({"audit_signing_key": "not base64 at all!"}, "neither a PEM block nor base64"),
        ({"audit_signing_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}, "not a readable"),
        ({"audit_signing_key_file": "/nonexistent/audit.pem"}, "does not name a readable file"),
        ({"audit_trusted_public_keys": "c2hvcnQ="}, "HANDOVER_AUDIT_TRUSTED_PUBLIC_KEYS"),
    ],
)
def test_a_bad_key_refuses_the_start(values: dict[str, str], match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        Settings(**values)
    message = info.value.errors()[0]["msg"]  # what `handover` prints: the key itself is never quoted
    assert all(v not in message for v in values.values() if "/" not in v)


def test_an_rsa_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ValidationError, match="not an Ed25519 key"):
        Settings(audit_signing_key=pem)


def test_signed_claims_verify_and_any_change_does_not() -> None:
    ring = anchor.keyring(KEY, [])
    assert ring.signer_id is not None
    claims = anchor.Claims(7, "a" * 64, 7, START, ring.signer_id, True, "worker")
    signature = ring.sign(claims)
    assert ring.problem(claims, signature) is None
    for change in ({"seq": 6}, {"head_hash": "b" * 64}, {"count": 8}, {"verified": False}, {"reason": "x"}):
        assert "does not verify" in (ring.problem(dataclasses.replace(claims, **change), signature) or "")
    assert "does not verify" in (ring.problem(claims, "not base64!") or "")
    other = anchor.keyring(Ed25519PrivateKey.generate(), [])
    assert "not trusted" in (other.problem(claims, signature) or "")
    public = base64.b64encode(KEY.public_key().public_bytes_raw()).decode()
    verifier = audit.keyring(Settings(audit_trusted_public_keys=f"{public}, {public}"))
    assert verifier.signer is None and verifier.problem(claims, signature) is None
