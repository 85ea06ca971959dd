"""Property: no header or claim value, signed or not, makes the token check answer anything but 401 or 403.

Arbitrary JSON (deep, odd numbers like 1e400, NaN, huge integers) in the header's kid/alg/typ/crit and in
the claims role/scope/emp/exp/nbf/iat/sub/iss/aud, signed with the right key, a wrong one, unsigned or
with junk appended, sent over HTTP to a read and to a POST with an Idempotency-Key. A token that passes
is one that was signed with the right key and carries no junk.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.core.config import Settings


class Raw:
    """JSON text written as is: numbers that Python's json cannot produce, like 1e400."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


NOW = int(dt.datetime.now(dt.UTC).timestamp())
ODD_NUMBERS = [
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" * 400,
    "-0",
    "0.0",
    "1e-400",
    str(2**63),
    str(NOW + 600) + ".5",
]
PLAUSIBLE = ["admin", "hr", "manager", "integration", "JWT", "HS256", "none", "exp", "e1", "directory:read", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(ODD_NUMBERS).map(Raw),
    st.integers(min_value=NOW - 3600, max_value=NOW + 3600),
    st.just("a" * 300),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
HEADER_NAMES = ["kid", "alg", "typ", "crit"]
CLAIM_NAMES = ["role", "scope", "emp", "exp", "nbf", "iat", "sub", "iss", "aud"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@st.composite
def tokens(draw: st.DrawFn, app_settings: Settings) -> tuple[str, bool]:
    """A token and whether it may pass (the right key, nothing appended)."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), unique=True, max_size=3)):
        header[name] = draw(json_values)
    claims: dict[str, Any] = {
        "sub": "u1",
        "role": "admin",
        "iss": app_settings.jwt_issuer,
        "aud": app_settings.jwt_audience,
        "iat": NOW,
        "exp": NOW + 600,
    }
    for name in draw(st.lists(st.sampled_from(CLAIM_NAMES), unique=True, min_size=1, max_size=4)):
        if draw(st.booleans()):
            claims[name] = draw(json_values)
        else:
            claims.pop(name, None)
    signing_input = f"{b64(dump(header).encode())}.{b64(dump(claims).encode())}"
    how = draw(st.sampled_from(["right", "wrong", "unsigned", "garbage"]))
    if how == "unsigned":
        signature = ""
    elif how == "garbage":
        signature = draw(st.text(alphabet="ABCxyz019-_=+/.! ", max_size=50))
    else:
        secret = app_settings.jwt_secret.get_secret_value() if how == "right" else "another-secret-" + "x" * 32
        signature = b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    junk = draw(st.sampled_from(["", "", "", "!!!", "%%", ".", "=", "==", ".e30", "\tx"]))
    return f"{signing_input}.{signature}{junk}", how == "right" and junk == ""


PROPERTY = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def check(response: Any, may_pass: bool, passed: set[int]) -> None:
    assert response.status_code in {401, 403} | passed, response.text
    if response.status_code in passed:
        assert may_pass, response.text
    elif response.status_code == 401:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    else:
        assert response.headers["content-type"].startswith("application/problem+json")


def test_malformed_tokens_are_401_or_403_never_500(client: TestClient, settings: Settings) -> None:
    @PROPERTY
    @given(case=tokens(settings), post=st.booleans())
    def run(case: tuple[str, bool], post: bool) -> None:
        token, may_pass = case
        headers = {"Authorization": f"Bearer {token}"}
        if post:
            headers["Idempotency-Key"] = uuid.uuid4().hex
            # An empty body: a token that passes gets 422, so nothing is ever created.
            check(client.post("/v1/handovers", json={}, headers=headers), may_pass, {422})
        else:
            check(client.get("/v1/employees", headers=headers), may_pass, {200})

    run()


def test_a_time_claim_beyond_a_float_is_malformed_not_an_overflow() -> None:
    """`exp` = a 400-digit integer made math.isfinite raise OverflowError (a 500, found by the property on
    PostgreSQL's run); past year 9999 a NumericDate is refused as malformed."""
    from app.core.auth import read_token
    from app.core.errors import Unauthorized

    def seg(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    header = seg('{"alg":"HS256","typ":"JWT"}')
    for exp in ("1" * 400, str(2**63), "253402300800"):
        token = f"{header}.{seg('{' + chr(34) + 'exp' + chr(34) + ':' + exp + '}')}.{seg('sig')}"
        try:
            read_token(token)
        except Unauthorized as exc:
            assert "exp must be a number of seconds" in str(exc.detail if hasattr(exc, "detail") else exc)
        else:
            raise AssertionError(f"exp={exp[:20]} was accepted")
    assert read_token(f"{header}.{seg('{' + chr(34) + 'exp' + chr(34) + ':253402300799}')}.{seg('sig')}")[1]["exp"]
