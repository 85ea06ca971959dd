"""Standard Webhooks signatures for the inbound HR webhook; the implementation lives in `app.core.signing`."""

from app.core.signing import (
    DEFAULT_TOLERANCE,
    MIN_SECRET_BYTES,
    SECRET_PREFIX,
    SIGNATURE_VERSION,
    InvalidSignature,
    parse_secrets,
    sign,
    verify_signature,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "SIGNATURE_VERSION",
    "InvalidSignature",
    "parse_secrets",
    "sign",
    "verify_signature",
]
