"""Standard Webhooks signature verification, without HTTP or a database."""

from __future__ import annotations

import base64
import datetime as dt
import os

import pytest
import standardwebhooks

from app.core.signing import InvalidSignature, parse_secrets, sign, verify_signature

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
TS = int(NOW.timestamp())
BODY = b'{"type":"employee.exit","data":{"employee":"E1"}}'
MSG_ID = "msg_2Lx8Q"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET = new_secret()


def headers(secret: str = SECRET, *, msg_id: str = MSG_ID, ts: int = TS, body: bytes = BODY) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def reason(secrets: list[str], hdrs: dict[str, str], body: bytes = BODY, now: dt.datetime = NOW) -> str:
    with pytest.raises(InvalidSignature) as info:
        verify_signature(secrets, hdrs, body, now)
    return info.value.reason


def test_valid_signature_passes() -> None:
    verify_signature([SECRET], headers(), BODY, NOW)


def test_header_names_are_case_insensitive() -> None:
    verify_signature([SECRET], {k.title(): v for k, v in headers().items()}, BODY, NOW)


@pytest.mark.parametrize("index", [0, len(BODY) // 2, len(BODY) - 1])
def test_one_tampered_byte_fails(index: int) -> None:
    tampered = bytearray(BODY)
    tampered[index] ^= 0x01
    assert reason([SECRET], headers(), bytes(tampered)) == "no matching signature"


def test_tampered_id_or_timestamp_fails() -> None:
    assert reason([SECRET], {**headers(), "webhook-id": "msg_other"}) == "no matching signature"
    assert reason([SECRET], {**headers(), "webhook-timestamp": str(TS + 1)}) == "no matching signature"


def test_wrong_secret_fails() -> None:
    assert reason([new_secret()], headers()) == "no matching signature"


@pytest.mark.parametrize("offset", [-301, -3600, -(10**9)])
def test_stale_timestamp_fails(offset: int) -> None:
    assert reason([SECRET], headers(ts=TS + offset)) == "webhook-timestamp is too old"


@pytest.mark.parametrize("offset", [301, 3600, 10**11])
def test_future_timestamp_fails(offset: int) -> None:
    assert reason([SECRET], headers(ts=TS + offset)) == "webhook-timestamp is in the future"


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_timestamp_at_the_tolerance_edge_passes(offset: int) -> None:
    verify_signature([SECRET], headers(ts=TS + offset), BODY, NOW)


def test_tolerance_is_a_parameter() -> None:
    hdrs = headers(ts=TS - 30)
    verify_signature([SECRET], hdrs, BODY, NOW, tolerance=dt.timedelta(seconds=30))
    with pytest.raises(InvalidSignature):
        verify_signature([SECRET], hdrs, BODY, NOW, tolerance=dt.timedelta(seconds=29))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(missing: str) -> None:
    hdrs = headers()
    del hdrs[missing]
    assert reason([SECRET], hdrs) == f"missing {missing} header"
    assert reason([SECRET], {**headers(), missing: "  "}) == f"missing {missing} header"


@pytest.mark.parametrize("value", ["1.7e9", "-1", "abc", "１７００", str(TS) + ".5", "9" * 40])
def test_malformed_timestamp_fails(value: str) -> None:
    assert reason([SECRET], {**headers(), "webhook-timestamp": value}) == "webhook-timestamp is not unix seconds"


def test_rotated_secrets_either_is_accepted() -> None:
    old, new = new_secret(), new_secret()
    verify_signature([old, new], headers(old), BODY, NOW)
    verify_signature([old, new], headers(new), BODY, NOW)
    assert reason([old, new], headers(new_secret())) == "no matching signature"


def test_several_signatures_in_the_header_any_matches() -> None:
    other = new_secret()
    hdrs = headers()
    hdrs["webhook-signature"] = f"{sign(other, MSG_ID, TS, BODY)} {hdrs['webhook-signature']}"
    verify_signature([SECRET], hdrs, BODY, NOW)


def test_unknown_versions_are_ignored() -> None:
    good = headers()["webhook-signature"]
    v2 = "v2," + good.split(",", 1)[1]
    assert reason([SECRET], {**headers(), "webhook-signature": v2}) == "no v1 signature"
    assert reason([SECRET], {**headers(), "webhook-signature": "v1a,abc"}) == "no v1 signature"
    verify_signature([SECRET], {**headers(), "webhook-signature": f"v2,xyz {good}"}, BODY, NOW)


@pytest.mark.parametrize("garbage", ["v1,!!!notbase64!!!", "v1,", "v1", ",", "v1,YWJj", "v1,YWJj=x"])
def test_garbage_signatures_fail_without_crashing(garbage: str) -> None:
    assert reason([SECRET], {**headers(), "webhook-signature": garbage}) in {"no matching signature", "no v1 signature"}


def test_garbage_next_to_a_valid_signature_is_skipped() -> None:
    good = headers()["webhook-signature"]
    verify_signature([SECRET], {**headers(), "webhook-signature": f"v1,%%% {good}"}, BODY, NOW)


def test_non_utf8_body_is_verified_as_bytes() -> None:
    body = b"\xff\xfe\x00 not utf-8"
    verify_signature([SECRET], headers(body=body), body, NOW)


def test_configuration_errors_are_value_errors_not_signature_errors() -> None:
    with pytest.raises(ValueError, match="no webhook secrets"):
        verify_signature([], headers(), BODY, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_signature([SECRET], headers(), BODY, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="base64"):
        verify_signature(["whsec_%%%"], headers(), BODY, NOW)


def test_parse_secrets() -> None:
    a, b = new_secret(), new_secret()
    assert parse_secrets(f"  {a}   {b} ") == [a, b]
    assert parse_secrets("") == []
    unprefixed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    assert parse_secrets(unprefixed) == [unprefixed]
    with pytest.raises(ValueError, match="at least 24 bytes"):
        parse_secrets("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        parse_secrets("whsec_not*base64")


def test_sign_accepts_a_datetime_and_matches_the_spec_vector() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id, ts, body) == expected
    assert sign(secret, msg_id, dt.datetime.fromtimestamp(ts, dt.UTC), body) == expected


def test_interoperates_with_the_reference_library() -> None:
    """Our signatures verify with `standardwebhooks`, and its signatures verify with ours."""
    now = dt.datetime.now(dt.UTC)
    wh = standardwebhooks.Webhook(SECRET)
    theirs = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": wh.sign(MSG_ID, now, BODY.decode()),
    }
    verify_signature([SECRET], theirs, BODY, now)
    ours = headers(ts=int(now.timestamp()))
    wh.verify(BODY, ours)
