"""Signed checkpoints of the chain head, pure: what is signed, by which key, and how a signature is checked.

A checkpoint says "the entry at `seq` has hash `head_hash`, and the log held `count` entries up to it", signed with
an Ed25519 key the database does not hold: whoever can write the database can no longer truncate the log or
recompute hashes before a checkpoint without the checkpoint disagreeing. `verified` says the signer walked the
chain up to this head (from the previous verified checkpoint) before signing; verification starts from there.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit.chain import canonical_json, format_time
from app.core.keys import key_id

DOMAIN = "handover-service/audit-checkpoint/v1"


@dataclass(frozen=True)
class Claims:
    seq: int
    head_hash: str
    count: int
    at: dt.datetime
    key_id: str
    verified: bool
    reason: str


def message(claims: Claims) -> str:
    """The exact text signed: a domain line (a checkpoint signature is never valid for anything else), then the
    claims' canonical JSON."""
    body = {
        "seq": claims.seq,
        "head_hash": claims.head_hash,
        "count": claims.count,
        "at": format_time(claims.at),
        "key_id": claims.key_id,
        "verified": claims.verified,
        "reason": claims.reason,
    }
    return DOMAIN + "\n" + canonical_json(body)


@dataclass(frozen=True)
class Keyring:
    signer: Ed25519PrivateKey | None
    trusted: Mapping[str, Ed25519PublicKey]

    @property
    def signer_id(self) -> str | None:
        return key_id(self.signer.public_key()) if self.signer is not None else None

    def sign(self, claims: Claims) -> str:
        if self.signer is None or claims.key_id != self.signer_id:
            raise ValueError("no signing key for these claims")
        return base64.b64encode(self.signer.sign(message(claims).encode())).decode()

    def problem(self, claims: Claims, signature: str) -> str | None:
        """Why this signature does not vouch for these claims, or None when it does."""
        public = self.trusted.get(claims.key_id)
        if public is None:
            return f"signed by key {claims.key_id}, which is not trusted"
        try:
            public.verify(base64.b64decode(signature, validate=True), message(claims).encode())
        except (InvalidSignature, binascii.Error, ValueError):
            return "the signature does not verify (the checkpoint was altered or forged)"
        return None


def keyring(signer: Ed25519PrivateKey | None, trusted: Sequence[Ed25519PublicKey]) -> Keyring:
    """The signing key's own public key is always trusted; the others verify what earlier keys signed."""
    keys = {key_id(k): k for k in trusted}
    if signer is not None:
        keys[key_id(signer.public_key())] = signer.public_key()
    return Keyring(signer=signer, trusted=keys)
