"""Keys from a real loopback JWKS server: rotation, the refresh-rate limit, failures, and IdP-shaped tokens.

The server is a small http.server on 127.0.0.1 whose key set the tests change; the app's refresh-rate limit
follows its injected ManualClock, moved by hand (no sleeps). Okta-, Entra ID- and Keycloak-like tokens go
through real HTTP requests to the app.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jose import jwk, jwt
from pydantic import ValidationError

from app.core.auth import ROLE_SCOPES, TokenVerifier, build_key, claim, mint_token, principal_from_claims
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.errors import Unauthorized
from app.core.jwks import MAX_STALE_SECONDS, JwksCache, JwksError, parse_jwks
from app.main import create_app
from tests.conftest import START, make_settings

URL = "/v1/employees"
ISSUER = "https://id.example.test"
AUDIENCE = "handover-service"
MIN_REFRESH = 30.0
CACHE = 300.0


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Signer:
    kid: str
    alg: str
    private_pem: str
    public_pem: str
    public_jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        # The key parsed once: loading a PEM checks the RSA key, which costs ~0.1 s on a busy machine.
        return str(jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid, **headers}))

    @property
    def key(self) -> Any:
        if "_key" not in self.__dict__:
            self.__dict__["_key"] = jwk.construct(self.private_pem, self.alg)
        return self.__dict__["_key"]


def _signer(kid: str, alg: str = "RS256") -> Signer:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg.startswith("RS")
        else ec.generate_private_key(ec.SECP256R1())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    entry = {k: v for k, v in jwk.construct(public, alg).to_dict().items()}
    entry.update(kid=kid, use="sig", alg=alg)
    return Signer(kid, alg, private, public, entry)


@pytest.fixture(scope="module")
def k1() -> Signer:
    return _signer("k1")


@pytest.fixture(scope="module")
def k2() -> Signer:
    return _signer("k2")


@pytest.fixture(scope="module")
def e1() -> Signer:
    return _signer("e1", "ES256")


@dataclass
class JwksServer:
    """A loopback JWKS endpoint: `keys` is what it publishes, `mode` how it answers, `hits` how often it was asked."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"  # ok | error | garbage | hang | huge
    hits: int = 0
    paths: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.hits += 1
            state.paths.append(self.path)
            if state.mode == "hang":
                state.release.wait(10)  # held until the test ends; the app's timeout must cut it first
                return
            if state.mode == "error":
                body, status = b'{"error":"unavailable"}', 503
            elif state.mode == "garbage":
                body, status = b"<html>not a key set</html>", 200
            elif state.mode == "huge":
                body, status = b'{"keys":[' + b" " * (300 * 1024) + b"]}", 200
            else:
                body, status = json.dumps({"keys": state.keys}).encode(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def idp_clock() -> ManualClock:
    return ManualClock(START)


def _settings(database_url: str, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_algorithms": ["RS256", "ES256"],
        "jwt_jwks_url": url,
        "jwt_jwks_timeout_seconds": 3.0,  # generous: the loopback server answers slowly on a loaded machine
        "jwt_jwks_cache_seconds": CACHE,
        "jwt_jwks_min_refresh_seconds": MIN_REFRESH,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def idp_app(database_url: str, jwks_server: JwksServer, idp_clock: ManualClock, db: Any) -> Any:
    def build(**overrides: Any) -> TestClient:
        app = create_app(_settings(database_url, jwks_server.url, **overrides), clock=idp_clock)
        return TestClient(app, raise_server_exceptions=False)

    return build


@pytest.fixture
def c(idp_app: Any) -> Iterator[TestClient]:
    with idp_app() as client:
        yield client


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "u1", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "iat": now}
    claims["exp"] = now + 600
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _get(client: TestClient, token: str, url: str = URL) -> Any:
    return client.get(url, headers={"Authorization": f"Bearer {token}"})


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def _assert_503(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1


# ---- keys, rotation and the refresh-rate limit ----------------------------------------------------


def test_rs256_and_es256_keys_from_the_url_are_fetched_once(
    c: TestClient, jwks_server: JwksServer, k1: Signer, e1: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk, e1.public_jwk]
    assert _get(c, k1.sign(_claims())).status_code == 200
    assert _get(c, e1.sign(_claims(sub="u2"))).status_code == 200
    assert _get(c, k1.sign(_claims(sub="u3"))).status_code == 200
    assert jwks_server.hits == 1  # cached: one fetch for every token


def test_rotation_old_kid_refused_after_removal_new_kid_accepted_without_restart(
    c: TestClient, jwks_server: JwksServer, idp_clock: ManualClock, k1: Signer, k2: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk]
    old = k1.sign(_claims())
    assert _get(c, old).status_code == 200
    # The provider rotates: k2 replaces k1.
    jwks_server.keys = [k2.public_jwk]
    new = k2.sign(_claims())
    # Within the refresh interval the cache does not ask again: the new kid is unknown for now.
    _assert_401(_get(c, new))
    assert jwks_server.hits == 1
    idp_clock.advance(dt.timedelta(seconds=MIN_REFRESH))
    assert _get(c, new).status_code == 200  # the unknown kid made it refresh
    assert jwks_server.hits == 2
    _assert_401(_get(c, old))  # the remembered token of the removed key stops too
    _assert_401(_get(c, k1.sign(_claims(sub="fresh"))))
    assert jwks_server.hits == 2


def test_a_set_past_its_cache_time_is_fetched_again_and_drops_removed_keys(
    c: TestClient, jwks_server: JwksServer, idp_clock: ManualClock, k1: Signer, k2: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk, k2.public_jwk]
    token = k1.sign(_claims())
    assert _get(c, token).status_code == 200
    jwks_server.keys = [k2.public_jwk]
    idp_clock.advance(dt.timedelta(seconds=CACHE - 1))
    assert _get(c, token).status_code == 200  # still the cached set
    idp_clock.advance(dt.timedelta(seconds=1))
    _assert_401(_get(c, token))
    assert _get(c, k2.sign(_claims())).status_code == 200
    assert jwks_server.hits == 2


def test_unknown_kid_flood_fetches_at_most_once_per_interval(
    c: TestClient, jwks_server: JwksServer, idp_clock: ManualClock, k1: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk]
    assert _get(c, k1.sign(_claims())).status_code == 200
    intervals = 4
    for _ in range(intervals):
        for _ in range(50):
            forged = k1.sign(_claims(), kid=uuid.uuid4().hex)
            _assert_401(_get(c, forged))
        idp_clock.advance(dt.timedelta(seconds=MIN_REFRESH))
    # 200 tokens with made-up kids over 4 intervals: the first fetch, then one per interval after it.
    assert jwks_server.hits == 1 + (intervals - 1)


@pytest.mark.parametrize("case", ["expired", "wrong_aud", "iss_superstring", "no_sub", "edited", "other_key"])
def test_jwks_attack_matrix(c: TestClient, jwks_server: JwksServer, k1: Signer, case: str) -> None:
    jwks_server.keys = [k1.public_jwk]
    now = int(time.time())
    if case == "expired":
        token = k1.sign(_claims(iat=now - 3600, exp=now - 120))
    elif case == "wrong_aud":
        token = k1.sign(_claims(aud="another-service"))
    elif case == "iss_superstring":
        token = k1.sign(_claims(iss=ISSUER + ".evil.example"))
    elif case == "no_sub":
        token = k1.sign(_claims(sub=None))
    elif case == "edited":
        header, _, sig = k1.sign(_claims(role="auditor")).split(".")
        token = f"{header}.{_b64(json.dumps(_claims()).encode())}.{sig}"
    else:
        token = _signer("k1").sign(_claims())  # the right kid, another key
    _assert_401(_get(c, token))


def test_token_without_kid_is_refused(c: TestClient, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    token = str(jwt.encode(_claims(), k1.private_pem, algorithm="RS256"))
    _assert_401(_get(c, token))


# ---- algorithm confusion --------------------------------------------------------------------------


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def test_hs256_signed_with_the_jwks_public_key_is_refused(c: TestClient, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    assert _get(c, k1.sign(_claims())).status_code == 200
    for secret in (
        k1.public_pem.encode(),
        json.dumps(k1.public_jwk).encode(),
        json.dumps(k1.public_jwk, separators=(",", ":")).encode(),
        k1.public_jwk["n"].encode(),
    ):
        _assert_401(_get(c, _hs256(_claims(), secret, "k1")))


def test_alg_none_and_unpinned_algorithms_are_refused(c: TestClient, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    _assert_401(_get(c, f"{header}.{_b64(json.dumps(_claims()).encode())}."))
    ps = str(jwt.encode(_claims(), k1.private_pem, algorithm="RS512", headers={"kid": "k1"}))
    _assert_401(_get(c, ps))  # RS512 is not pinned (RS256, ES256)


def test_oct_weak_and_mismatched_keys_in_the_jwks_are_never_used(
    c: TestClient, jwks_server: JwksServer, k1: Signer
) -> None:
    secret = b"s" * 32
    jwks_server.keys = [k1.public_jwk, {"kty": "oct", "kid": "h1", "k": _b64(secret), "alg": "HS256"}]
    _assert_401(_get(c, _hs256(_claims(), secret, "h1")))
    # A key whose declared alg is not its kind (an RSA key said to be ES256) is skipped as well.
    assert parse_jwks(json.dumps({"keys": [k1.public_jwk]}).encode(), ["RS256"], build_key).keys() == {"k1"}
    with pytest.raises(JwksError):
        parse_jwks(json.dumps({"keys": [{**k1.public_jwk, "alg": "ES256"}]}).encode(), ["RS256", "ES256"], build_key)
    with pytest.raises(JwksError):
        parse_jwks(json.dumps({"keys": [{**k1.public_jwk, "use": "enc"}]}).encode(), ["RS256"], build_key)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    small_pem = small.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    weak = {**jwk.construct(small_pem.decode(), "RS256").to_dict(), "kid": "weak"}
    with pytest.raises(JwksError):
        parse_jwks(json.dumps({"keys": [weak]}).encode(), ["RS256"], build_key)


def test_keys_named_or_embedded_by_the_token_are_never_used(c: TestClient, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    evil = _signer("evil")
    jku = f"http://127.0.0.1:{jwks_server.port}/attacker.json"
    for kid in ("evil", "k1"):
        token = str(
            jwt.encode(
                _claims(),
                evil.key,
                algorithm="RS256",
                headers={"kid": kid, "jku": jku, "jwk": evil.public_jwk, "x5u": jku},
            )
        )
        _assert_401(_get(c, token))
    assert "/attacker.json" not in jwks_server.paths
    assert set(jwks_server.paths) == {"/.well-known/jwks.json"}


def test_hmac_algorithms_with_a_jwks_url_do_not_start(database_url: str) -> None:
    with pytest.raises(ValidationError, match="asymmetric"):
        make_settings(database_url, jwt_algorithms=["HS256"], jwt_jwks_url="https://id.example.test/jwks")


# ---- failures of the endpoint: 503 (or 401), never 500, never a hang ------------------------------


@pytest.mark.parametrize("mode", ["error", "garbage", "huge", "hang", "closed"])
def test_a_failing_endpoint_is_a_503_then_recovers(
    idp_app: Any, jwks_server: JwksServer, idp_clock: ManualClock, k1: Signer, mode: str
) -> None:
    jwks_server.keys = [k1.public_jwk]
    jwks_server.mode = mode
    overrides: dict[str, Any] = {"jwt_jwks_timeout_seconds": 0.5}
    if mode == "closed":
        overrides["jwt_jwks_url"] = "http://127.0.0.1:9/jwks"  # nothing listens on port 9
    with idp_app(**overrides) as client:
        started = time.monotonic()
        _assert_503(_get(client, k1.sign(_claims())))
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, elapsed  # timeout 0.5 s: the fetch is cut off, the request does not hang
        _assert_503(_get(client, k1.sign(_claims(sub="again"))))  # rate-limited: no new attempt
        assert jwks_server.hits == (0 if mode == "closed" else 1)
    if mode != "closed":
        jwks_server.mode = "ok"
        idp_clock.advance(dt.timedelta(seconds=MIN_REFRESH))
        with idp_app() as client:
            assert _get(client, k1.sign(_claims())).status_code == 200


def test_known_keys_outlive_an_outage_for_a_bounded_time(
    c: TestClient, jwks_server: JwksServer, idp_clock: ManualClock, k1: Signer, k2: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk]
    assert _get(c, k1.sign(_claims())).status_code == 200
    jwks_server.mode = "error"
    idp_clock.advance(dt.timedelta(seconds=CACHE))
    assert _get(c, k1.sign(_claims(sub="during"))).status_code == 200  # refresh failed: the last set serves
    assert jwks_server.hits == 2
    idp_clock.advance(dt.timedelta(seconds=MIN_REFRESH))
    _assert_503(_get(c, k2.sign(_claims())))  # an unknown kid cannot be judged while the endpoint fails
    idp_clock.advance(dt.timedelta(seconds=MAX_STALE_SECONDS))
    _assert_503(_get(c, k1.sign(_claims(sub="late"))))  # too old to trust any more


def test_cold_cache_post_with_idempotency_key_fetches_off_the_loop(
    c: TestClient, jwks_server: JwksServer, k1: Signer
) -> None:
    jwks_server.keys = [k1.public_jwk]
    headers = {"Authorization": f"Bearer {k1.sign(_claims())}", "Idempotency-Key": uuid.uuid4().hex}
    response = c.post("/v1/handovers", json={}, headers=headers)
    assert response.status_code == 422, response.text  # authorized by the middleware's check, then the body
    assert jwks_server.hits == 1


# ---- identity-provider-shaped tokens --------------------------------------------------------------


def test_okta_like_token_scp_list_and_groups(idp_app: Any, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    okta_iss, okta_aud = "https://dev-123456.okta.com/oauth2/default", "api://handover"
    with idp_app(jwt_issuer=okta_iss, jwt_audience=okta_aud, jwt_role_claim="groups", jwt_scope_claim="scp") as client:
        claims = _claims(
            iss=okta_iss, aud=okta_aud, role=None, ver=1, cid="0oa1crm", uid="00u1",
            groups=["Everyone", "hr"], scp=["openid", "directory:read"],
        )  # fmt: skip
        token = k1.sign(claims)
        assert _get(client, token).status_code == 200
        response = client.post("/v1/handovers", json={}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403  # scp narrowed hr to directory:read
        assert "handovers:write" in response.json()["detail"]
        machine = k1.sign(_claims(iss=okta_iss, aud=okta_aud, role=None, groups=["integration"], scp=["audit:read"]))
        assert _get(client, machine, "/v1/audit").status_code == 200
        assert _get(client, machine).status_code == 403
        _assert_401(_get(client, k1.sign(_claims(iss=okta_iss, aud=okta_aud, role=None, groups=["Everyone"]))))
        _assert_401(_get(client, k1.sign(_claims(aud=okta_aud, role=None, groups=["hr"]))))  # another issuer


def test_entra_like_token_roles_array(idp_app: Any, jwks_server: JwksServer, k1: Signer) -> None:
    jwks_server.keys = [k1.public_jwk]
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    entra_iss, entra_aud = f"https://login.microsoftonline.com/{tenant}/v2.0", "api://3f2b6a1e-handover"
    with idp_app(jwt_issuer=entra_iss, jwt_audience=entra_aud, jwt_role_claim="roles", jwt_scope_claim="scp") as client:

        def entra(**claims: Any) -> str:
            base = _claims(iss=entra_iss, aud=entra_aud, role=None, tid=tenant, oid=str(uuid.uuid4()), ver="2.0")
            return k1.sign({**base, **claims})

        assert _get(client, entra(roles=["auditor"]), "/v1/audit").status_code == 200
        assert _get(client, entra(roles=["manager"]), "/v1/audit").status_code == 403
        # Entra writes scp as a space-separated string.
        assert _get(client, entra(roles=["admin"], scp="handovers:read audit:read"), "/v1/audit").status_code == 200
        assert _get(client, entra(roles=["admin"], scp="handovers:read audit:read")).status_code == 403
        # Several roles: admin covers hr; hr and manager are not comparable, so the token is refused.
        assert _get(client, entra(roles=["hr", "admin"]), "/v1/audit").status_code == 200
        _assert_401(_get(client, entra(roles=["hr", "manager"])))
        _assert_401(_get(client, entra(roles="admin", scp=7)))
        _assert_401(_get(client, entra(roles=[{"value": "admin"}])))


def test_keycloak_like_token_realm_access_roles(idp_app: Any, jwks_server: JwksServer, e1: Signer) -> None:
    jwks_server.keys = [e1.public_jwk]
    kc_iss = "https://sso.example.test/realms/acme"
    with idp_app(
        jwt_issuer=kc_iss, jwt_audience="handover-service", jwt_role_claim="realm_access.roles", jwt_scope_claim=""
    ) as client:

        def kc(roles: list[str], **claims: Any) -> str:
            base = _claims(iss=kc_iss, role=None, typ="Bearer", azp="handover-ui", scope="openid profile email")
            return e1.sign({**base, "realm_access": {"roles": roles}, **claims})

        # OIDC scopes are not this service's: with the scope claim switched off, the role alone decides.
        roles = ["offline_access", "uma_authorization", "default-roles-acme", "auditor"]
        assert _get(client, kc(roles), "/v1/audit").status_code == 200
        assert _get(client, kc(["manager", "offline_access"])).status_code == 200
        _assert_401(_get(client, kc(["offline_access"])))
        _assert_401(_get(client, kc([], realm_access="auditor")))


# ---- claim paths -------------------------------------------------------------------------------


def test_claim_paths_find_nested_and_namespaced_claims() -> None:
    claims = {
        "realm_access": {"roles": ["hr"]},
        "resource_access": {"handover.service": {"roles": ["auditor"]}},
        "https://example.com/roles": ["admin"],
        "a.b": 1,
        "a": {"b": 2},
    }
    assert claim(claims, "realm_access.roles") == ["hr"]
    assert claim(claims, "resource_access.handover.service.roles") == ["auditor"]
    assert claim(claims, "https://example.com/roles") == ["admin"]
    assert claim(claims, "a.b") == 1  # an exact name wins over a path
    assert claim(claims, "realm_access.nothing") is claim(claims, "missing")


def test_own_role_and_scope_claims_keep_their_string_type() -> None:
    base = {"sub": "u1"}
    with pytest.raises(Unauthorized):
        principal_from_claims({**base, "role": ["admin"]})
    with pytest.raises(Unauthorized):
        principal_from_claims({**base, "role": "admin", "scope": ["audit:read"]})
    assert principal_from_claims({**base, "role": "admin", "scope": "audit:read"}).scopes == {"audit:read"}


# ---- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_jwks_url": "ftp://id.example.test/jwks"}, "http"),
        ({"jwt_jwks_url": "https:///jwks"}, "host"),
        ({"jwt_public_key": "x"}, "one key source"),
        ({"jwt_jwks_min_refresh_seconds": 600, "jwt_jwks_cache_seconds": 300}, "MIN_REFRESH"),
        ({"jwt_jwks_timeout_seconds": 0}, "greater than 0"),
        ({"jwt_role_claim": "realm access"}, "pattern"),
    ],
)
def test_jwks_settings_are_validated(database_url: str, overrides: dict[str, Any], message: str) -> None:
    values = {"jwt_algorithms": ["RS256"], "jwt_jwks_url": "https://id.example.test/jwks", **overrides}
    with pytest.raises(ValidationError, match=message):
        make_settings(database_url, **values)


def test_production_requires_https_for_the_jwks_url(database_url: str) -> None:
    with pytest.raises(ValidationError, match="https in production"):
        make_settings(
            database_url, environment="production", jwt_algorithms=["RS256"], jwt_jwks_url="http://id.example.test/j"
        )
    empty = make_settings(database_url, jwt_algorithms=["RS256"], jwt_jwks_url="https://x.test/j", jwt_scope_claim="")
    assert empty.jwt_scope_claim is None


def test_concurrent_requests_for_a_new_kid_share_one_fetch(jwks_server: JwksServer, k1: Signer, k2: Signer) -> None:
    jwks_server.keys = [k1.public_jwk, k2.public_jwk]
    cache = JwksCache(jwks_server.url, ["RS256"], build_key, timeout_seconds=2, clock=ManualClock(START))
    results: list[Any] = []

    def ask() -> None:
        results.append(cache.key("k2", "RS256"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 16 and all(r is results[0] for r in results)
    assert jwks_server.hits == 1


def test_minted_tokens_follow_the_configured_claim_names(database_url: str) -> None:
    for role_claim, scope_claim in [("realm_access.roles", ""), ("roles", "scp"), ("https://example.com/roles", "scp")]:
        settings = make_settings(database_url, jwt_role_claim=role_claim, jwt_scope_claim=scope_claim)
        token = mint_token(settings, role="manager", sub="m1", emp="e-1", scope="handovers:read")
        principal = TokenVerifier(settings).principal(token)
        assert (principal.role, principal.employee) == ("manager", "e-1")
        expected = ROLE_SCOPES["manager"] if not scope_claim else {"handovers:read"}
        assert principal.scopes == expected
