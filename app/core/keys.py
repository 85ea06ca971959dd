"""Ed25519 keys from configuration text: a PEM block or the base64 of the raw 32 bytes. Pure; messages never
quote the key."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def _raw(text: str, what: str) -> bytes:
    compact = "".join(text.split())
    try:
        raw = base64.b64decode(compact.replace("-", "+").replace("_", "/") + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is neither a PEM block nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes of base64 (an Ed25519 seed), not {len(raw)}")
    return raw


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PKCS#8 PEM (`openssl genpkey -algorithm ed25519`) or the base64 of a 32-byte seed."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("the audit signing key is not a readable unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw(text, "the audit signing key"))


def load_public_keys(text: str) -> list[Ed25519PublicKey]:
    """PEM public key blocks, or base64 raw 32-byte public keys separated by spaces or commas."""
    keys: list[Ed25519PublicKey] = []
    for block in _PEM_BLOCK.findall(text):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError:
            raise ValueError("a trusted audit public key is not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("a trusted audit public key is not an Ed25519 key")
        keys.append(key)
    for part in re.split(r"[\s,]+", _PEM_BLOCK.sub(" ", text).strip()):
        if part:
            keys.append(Ed25519PublicKey.from_public_bytes(_raw(part, "a trusted audit public key")))
    return keys


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """Names the key in what it signed, so a verifier with several trusted keys (a rotation) picks the right one."""
    return "ed25519:" + hashlib.sha256(public_bytes(key)).hexdigest()[:16]
