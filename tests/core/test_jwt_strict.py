"""Strict tokens (RFC 7515, 7519, 8725): odd headers, odd claim types, junk and long subjects are a 401, never a 500."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.auth import ROLE_SCOPES
from app.core.config import Settings
from app.core.db import Database
from app.directory.models import Employee
from app.metadata import metadata
from tests.support.directory import employee_body

URL = "/v1/employees"
MAX_SUBJECT_LENGTH = 255  # OIDC Core 1.0, section 2: sub is at most 255 ASCII characters
MAX_EMPLOYEE_LENGTH = 100  # employee.external_id
# Every column that stores a Principal.actor (f"{role}:{sub}").
ACTOR_COLUMNS = [
    "access_grant.created_by",
    "access_grant.revoked_by",
    "alert.resolved_by",
    "audit_entry.actor",
    "webhook_endpoint.created_by",
    "notification_template.updated_by",
    "risk_model_version.created_by",
    "risk_model_version.activated_by",
    "handover.created_by",
    "handover.approved_by",
    "handover.completed_by",
    "handover.cancelled_by",
    "handover.undone_by",
    "handover_item.outgoing_signed_by",
    "handover_item.incoming_signed_by",
    "follow_up.completed_by",
    "idempotency_key.principal",
]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def now() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


def claims_text(settings: Settings, **raw: str) -> str:
    """The claims as JSON text; each keyword is a claim's raw JSON (so `1e400` can be written as such)."""
    values = {
        "sub": json.dumps("u1"),
        "role": json.dumps("admin"),
        "iss": json.dumps(settings.jwt_issuer),
        "aud": json.dumps(settings.jwt_audience),
        "iat": str(now()),
        "exp": str(now() + 600),
    }
    values.update(raw)
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in values.items() if v != "") + "}"


def signed(settings: Settings, header: dict[str, Any] | str | None = None, payload: str | None = None) -> str:
    """A token signed with the right secret, whatever its header and claims say."""
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    header_text = header if isinstance(header, str) else json.dumps(header)
    signing_input = f"{b64(header_text.encode())}.{b64((payload or claims_text(settings)).encode())}"
    sig = hmac.new(settings.jwt_secret.get_secret_value().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def get(client: TestClient, token: str) -> Any:
    return client.get(URL, headers={"Authorization": f"Bearer {token}"})


def assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_the_helpers_make_a_valid_token(client: TestClient, settings: Settings) -> None:
    assert get(client, signed(settings)).status_code == 200


# ---- issue 18.3: no 500 from a key id, role or time of an odd type ------------------------------


@pytest.mark.parametrize("kid", [["k1"], {"k": 1}, 5, True, None])
def test_kid_that_is_not_a_string_is_a_401(client: TestClient, settings: Settings, kid: Any) -> None:
    assert_401(get(client, signed(settings, {"alg": "HS256", "kid": kid})))


@pytest.mark.parametrize("role", ['["admin"]', '{"admin":1}', "1", "null", "true"])
def test_role_that_is_not_a_string_is_a_401(client: TestClient, settings: Settings, role: str) -> None:
    assert_401(get(client, signed(settings, payload=claims_text(settings, role=role))))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity"])
def test_non_finite_times_are_a_401(client: TestClient, settings: Settings, claim: str, value: str) -> None:
    assert_401(get(client, signed(settings, payload=claims_text(settings, **{claim: value}))))


# ---- issue 18.10: crit, NumericDate, junk, alg, typ ------------------------------------------------


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["x-unknown"], [], "exp", None, {"exp": True}])
def test_any_crit_header_is_a_401(client: TestClient, settings: Settings, crit: Any) -> None:
    assert_401(get(client, signed(settings, {"alg": "HS256", "typ": "JWT", "crit": crit})))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("kind", ["string", "bool", "list", "null", "object"])
def test_times_must_be_json_numbers(client: TestClient, settings: Settings, claim: str, kind: str) -> None:
    t = now() + 600 if claim == "exp" else now() - 60
    raw = {"string": json.dumps(str(t)), "bool": "true", "list": f"[{t}]", "null": "null", "object": f'{{"t":{t}}}'}
    assert_401(get(client, signed(settings, payload=claims_text(settings, **{claim: raw[kind]}))))


def test_fractional_times_are_numbers_and_pass(client: TestClient, settings: Settings) -> None:
    payload = claims_text(settings, iat=f"{now()}.5", nbf=f"{now() - 60}.25", exp=f"{now() + 600}.75")
    assert get(client, signed(settings, payload=payload)).status_code == 200


def _non_canonical(segment: str) -> str:
    """The same bytes with the unused low bits of the last character set: lenient decoders take it."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 4, 3: 2}[len(segment) % 4]  # bits of the last character beyond the data
    value = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[value | ((1 << unused) - 1)]


@pytest.mark.parametrize(
    "junk",
    [
        lambda t: t + "!!!",
        lambda t: t + "%%",
        lambda t: t + ".",
        lambda t: t + "=",
        lambda t: t + "==",
        lambda t: t + "\tx",
        lambda t: t.replace(".", "=.", 1),
        lambda t: t.replace(".", "..", 1),
        lambda t: t + ".x",
        lambda t: "." + t,
        lambda t: t[:-4] + "+/" + t[-2:],
        lambda t: t.rsplit(".", 1)[0] + "." + _non_canonical(t.rsplit(".", 1)[1]),
        lambda t: t.split(".", 1)[0][:-1] + "é." + t.split(".", 1)[1],
    ],
    ids=["bang", "percent", "dot", "pad1", "pad2", "tab-then-junk", "pad-header", "empty-segment", "four-segments",
         "leading-dot", "base64-not-url", "non-canonical-bits", "non-ascii"],
)  # fmt: skip
def test_junk_around_a_valid_token_is_a_401(client: TestClient, settings: Settings, junk: Any) -> None:
    token = signed(settings)
    forged = junk(token)
    assert forged != token
    response = client.get(URL, headers={"Authorization": f"Bearer {forged}".encode()})
    assert_401(response)
    assert app_verifier(client).principal(token).sub == "u1"  # the genuine token still passes


def app_verifier(client: TestClient) -> Any:
    return client.app.state.verifier  # type: ignore[attr-defined]


def test_trailing_whitespace_is_refused_by_the_verifier(client: TestClient, settings: Settings) -> None:
    """HTTP servers strip a header's trailing blanks; the verifier itself takes the token as it is."""
    token = signed(settings)
    for forged in (token + " ", " " + token, token + "\n", token.replace(".", " .", 1)):
        with pytest.raises(Exception) as raised:
            app_verifier(client).principal(forged)
        assert getattr(raised.value, "status", None) == 401


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", None, ["HS256"], "HS512", "RS256"])
def test_only_the_pinned_algorithm_is_accepted(client: TestClient, settings: Settings, alg: Any) -> None:
    unsigned = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(claims_text(settings).encode())}."
    assert_401(get(client, unsigned))
    assert_401(get(client, signed(settings, {"alg": alg, "typ": "JWT"})))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/jwt", "application/at+JWT"])
def test_jwt_and_access_token_types_pass(client: TestClient, settings: Settings, typ: str) -> None:
    assert get(client, signed(settings, {"alg": "HS256", "typ": typ})).status_code == 200


def test_no_typ_passes(client: TestClient, settings: Settings) -> None:
    assert get(client, signed(settings, {"alg": "HS256"})).status_code == 200


@pytest.mark.parametrize("typ", ["JWS", "JOSE", "JOSE+JSON", "", "jwt ", "secevent+jwt", "text/jwt", None, 1, ["JWT"]])
def test_other_types_are_a_401(client: TestClient, settings: Settings, typ: Any) -> None:
    assert_401(get(client, signed(settings, {"alg": "HS256", "typ": typ})))


DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000


@pytest.mark.parametrize("header", ['["alg","HS256"]', '"HS256"', "null", DEEP_OBJECT, '{"alg":"HS256"'])
def test_a_header_that_is_not_a_json_object_is_a_401(client: TestClient, settings: Settings, header: str) -> None:
    assert_401(get(client, signed(settings, header)))


@pytest.mark.parametrize("payload", ["[1]", '"x"', "[" * 3000 + "]" * 3000, "{", "1" * 5000])
def test_a_payload_that_is_not_a_json_object_is_a_401(client: TestClient, settings: Settings, payload: str) -> None:
    assert_401(get(client, signed(settings, payload=payload)))


# ---- issue 18.5: a sub up to 255 characters works everywhere; longer is refused ---------------------


def test_the_longest_actor_fits_every_actor_column() -> None:
    longest = max(len(role) for role in ROLE_SCOPES) + 1 + MAX_SUBJECT_LENGTH
    columns = {name: metadata.tables[name.split(".")[0]].c[name.split(".")[1]] for name in ACTOR_COLUMNS}
    short = [name for name, column in columns.items() if getattr(column.type, "length", 0) < longest]
    assert short == []


def _put_employee(client: TestClient, settings: Settings, sub: str, **raw: str) -> Any:
    token = signed(settings, payload=claims_text(settings, sub=json.dumps(sub), **raw))
    body = employee_body()
    return client.put(f"{URL}/long-sub", json=body, headers={"Authorization": f"Bearer {token}"})


def test_a_255_character_subject_can_write_and_is_audited_whole(
    client: TestClient, settings: Settings, db: Database
) -> None:
    sub = "s" * 200 + "é" * 55
    assert len(sub) == MAX_SUBJECT_LENGTH
    response = _put_employee(client, settings, sub)
    assert response.status_code == 201, response.text
    with db.session(write=False) as s:
        actors = s.scalars(select(AuditEntry.actor).where(AuditEntry.entity_id == "long-sub")).all()
    assert actors == [f"admin:{sub}"]


def test_a_256_character_subject_is_a_401_and_writes_nothing(
    client: TestClient, settings: Settings, db: Database
) -> None:
    assert_401(_put_employee(client, settings, "s" * (MAX_SUBJECT_LENGTH + 1)))
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Employee)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_an_emp_longer_than_an_employee_id_is_a_401(client: TestClient, settings: Settings, db: Database) -> None:
    assert _put_employee(client, settings, "u1", emp=json.dumps("e" * MAX_EMPLOYEE_LENGTH)).status_code == 201
    assert_401(_put_employee(client, settings, "u1", emp=json.dumps("e" * (MAX_EMPLOYEE_LENGTH + 1))))


@pytest.mark.parametrize("sub", ['""', "1", '["u1"]', "null"])
def test_a_subject_that_is_not_a_nonempty_string_is_a_401(client: TestClient, settings: Settings, sub: str) -> None:
    assert_401(get(client, signed(settings, payload=claims_text(settings, sub=sub))))
