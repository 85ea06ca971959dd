"""Standard Webhooks signatures (https://www.standardwebhooks.com): verify inbound, sign outbound.

Shared by the inbound HR webhook and outbound deliveries. Pure: no FastAPI, no database, and the current
time is a parameter. The stdlib `hmac` is used rather than the `standardwebhooks` package because that
package reads the wall clock (tests and the app clock could not move time), has a fixed tolerance and a
single secret (no rotation), and raises ValueError, binascii.Error or UnicodeDecodeError on malformed
headers or non-UTF-8 bodies instead of a verification error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = dt.timedelta(minutes=5)
# The spec recommends 24–64 byte keys; shorter configured secrets are refused at parse time.
MIN_SECRET_BYTES = 24
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")


class InvalidSignature(Exception):
    """The delivery is not authentic (or no longer fresh); `reason` says why, for logs and the 401 detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode_secret(secret: str) -> bytes:
    """`whsec_<base64>` (prefix optional, padding optional) to the HMAC key; ValueError if unusable."""
    raw = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret must be base64, optionally prefixed with whsec_") from exc
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def parse_secrets(setting: str) -> list[str]:
    """Space-separated secrets, so a new one can be added before the sender switches (rotation).

    Raises ValueError for a malformed or too short secret, so a bad configuration fails loudly.
    """
    secrets = setting.split()
    for secret in secrets:
        if len(_decode_secret(secret)) < MIN_SECRET_BYTES:
            raise ValueError(f"a webhook secret must decode to at least {MIN_SECRET_BYTES} bytes")
    return secrets


def _timestamp_seconds(timestamp: int | dt.datetime) -> int:
    if isinstance(timestamp, dt.datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return int(timestamp.timestamp())
    return int(timestamp)


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int | dt.datetime, body: bytes) -> str:
    """The `webhook-signature` entry (`v1,<base64>`) for one secret; join several with spaces."""
    digest = _signature(_decode_secret(secret), msg_id, _timestamp_seconds(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _candidates(header: str) -> list[bytes]:
    """The v1 signatures in the header; other versions and undecodable entries are skipped."""
    found: list[bytes] = []
    for entry in header.split():
        version, sep, value = entry.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify_signature(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: dt.datetime,
    tolerance: dt.timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Returns if one v1 signature matches one secret and the timestamp is within ±tolerance of now.

    Raises InvalidSignature otherwise. ValueError means a programming or configuration error (no secrets,
    a malformed secret, a naive `now`), which must not be reported to the sender as their fault.
    """
    if not secrets:
        raise ValueError("no webhook secrets configured")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    keys = [_decode_secret(s) for s in secrets]
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "").strip()
    raw_timestamp = lowered.get("webhook-timestamp", "").strip()
    signature_header = lowered.get("webhook-signature", "").strip()
    for name, value in (
        ("webhook-id", msg_id),
        ("webhook-timestamp", raw_timestamp),
        ("webhook-signature", signature_header),
    ):
        if not value:
            raise InvalidSignature(f"missing {name} header")
    if not _TIMESTAMP_RE.fullmatch(raw_timestamp):
        raise InvalidSignature("webhook-timestamp is not unix seconds")
    timestamp = int(raw_timestamp)
    # Integer arithmetic: no overflow from absurd timestamps, no float rounding at the boundary.
    skew = timestamp - int(now.timestamp())
    limit = int(tolerance.total_seconds())
    if skew < -limit:
        raise InvalidSignature("webhook-timestamp is too old")
    if skew > limit:
        raise InvalidSignature("webhook-timestamp is in the future")
    candidates = _candidates(signature_header)
    if not candidates:
        raise InvalidSignature(f"no {SIGNATURE_VERSION} signature")
    matched = False
    for key in keys:
        expected = _signature(key, msg_id, timestamp, body)
        for candidate in candidates:
            # No early exit: the time taken does not depend on which secret or entry matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("no matching signature")


def generate_secret(nbytes: int = 32) -> str:
    """A fresh `whsec_<base64>` secret for an outbound endpoint (32 bytes: inside the spec's 24–64)."""
    if not MIN_SECRET_BYTES <= nbytes <= 64:
        raise ValueError("secrets must be 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def signed_headers(secret: str, msg_id: str, timestamp: int | dt.datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one outbound delivery."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(_timestamp_seconds(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
