"""Bearer JWT verification (the only module that touches python-jose), roles and scopes.

The dependency is `async def` on purpose: a sync dependency costs a threadpool hop per request,
and verifying an HMAC or RSA signature is fast enough to run on the event loop. Only tokens that
name a person (`emp`) take one hop, to check that the person has not left.

Tokens are read strictly (RFC 7515, 7519, 8725) before python-jose sees them: three segments of canonical
base64url, JSON objects, no `crit` (no extension is understood), `typ` JWT or at+jwt if present, a string
`kid`, and exp/nbf/iat as finite JSON numbers; so a malformed token is a 401, never a crash.

With `HANDOVER_JWT_JWKS_URL` the keys come from the identity provider (app/core/jwks.py): a token must
name a `kid`, a due fetch (an unknown kid, an old set) runs off the event loop, and a remembered token is
checked again against the current set, so a key removed from the JWKS stops its tokens at the next refresh.
Where the role, scopes and employee id sit is configurable (Okta's `scp` list, Entra ID's `roles` array,
Keycloak's `realm_access.roles`): see `ClaimNames`.

A token that verified once is remembered (a bounded LRU keyed by the exact token string), so a CRM
that sends the same machine token on every call pays for the signature and claim checks once; its
exp and nbf are still checked on every use, and a token that fails is never remembered.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from fastapi.security.utils import get_authorization_scheme_param
from jose import jwk, jwt
from jose.exceptions import JOSEError
from starlette.concurrency import run_in_threadpool

from app.core.clock import Clock
from app.core.config import Settings
from app.core.errors import Forbidden, Unauthorized
from app.core.jwks import JwksCache, RefreshNeeded

SCOPES: dict[str, str] = {
    "directory:read": "Read employees and clients.",
    "directory:write": "Create and update employees and clients.",
    "handovers:read": "Read handovers, items, reports and simulations.",
    "handovers:write": "Create, plan, review, cancel and sign off handovers.",
    "handovers:approve": "Approve, execute and undo handovers.",
    "access:check": "Ask for access decisions and report access events.",
    "access:admin": "Manage access grants and alerts.",
    "notifications:read": "Read notifications.",
    "notifications:admin": "Edit notification templates.",
    "webhooks:admin": "Manage outbound webhook endpoints and deliveries.",
    "risk:read": "Read risk scores and the risk model.",
    "risk:admin": "Change and fit the risk model.",
    "audit:read": "Read and verify the audit log.",
    "ops:read": "Read operational metrics.",
}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "hr": frozenset(
        {
            "directory:read",
            "directory:write",
            "handovers:read",
            "handovers:write",
            "access:check",
            "notifications:read",
            "risk:read",
        }
    ),
    "manager": frozenset(
        {
            "directory:read",
            "handovers:read",
            "handovers:write",
            "handovers:approve",
            "access:check",
            "notifications:read",
            "risk:read",
        }
    ),
    "account_manager": frozenset({"directory:read", "handovers:read", "handovers:write", "access:check", "risk:read"}),
    "auditor": frozenset({"audit:read", "directory:read", "handovers:read", "risk:read"}),
    "integration": frozenset(),  # machine tokens carry explicit scopes
}

# Roles that see every object; the others are limited by object-level rules.
UNRESTRICTED_ROLES = frozenset({"admin", "hr", "auditor", "integration"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, role, effective scopes and linked employee."""

    sub: str
    role: str
    scopes: frozenset[str]
    employee: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def unrestricted(self) -> bool:
        return self.role in UNRESTRICTED_ROLES

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.sub}"


TOKEN_CACHE_SIZE = 1024
MAX_SUBJECT_LENGTH = 255  # OIDC Core 1.0 section 2: sub is at most 255 ASCII characters
MAX_EMPLOYEE_LENGTH = 100  # employee.external_id
SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})  # RFC 7519 5.1, RFC 9068
TIME_CLAIMS = ("exp", "nbf", "iat")


def _segment(text: str) -> bytes:
    """Strict base64url: only its alphabet, no padding, and the canonical encoding of the bytes it gives."""
    if SEGMENT_RE.fullmatch(text) is None:
        raise Unauthorized("The token is malformed.")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized("The token is malformed.") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise Unauthorized("The token is malformed.")
    return raw


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Unauthorized("The token is malformed.") from exc
    if not isinstance(value, dict):
        raise Unauthorized("The token is malformed.")
    return value


# 9999-12-31T23:59:59Z: a NumericDate past what a datetime holds is not a date (and an int beyond a float's range
# would make math.isfinite raise OverflowError: a 500 from a malformed token).
MAX_NUMERIC_DATE = 253_402_300_799


def _is_numeric_date(value: Any) -> bool:
    """RFC 7519 NumericDate: a JSON number of seconds (not a string, a boolean, an infinity or past year 9999)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE


def read_token(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and the claims of a well-formed token, unverified; Unauthorized if it is not well-formed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("The token is malformed.")
    header, claims = _json_object(_segment(parts[0])), _json_object(_segment(parts[1]))
    _segment(parts[2])
    if "crit" in header:
        raise Unauthorized("The token names critical extensions (crit); none are supported.")
    typ = header.get("typ", "jwt")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise Unauthorized("The token's type (typ) is not a JWT.")
    if "kid" in header and not isinstance(header["kid"], str):
        raise Unauthorized("The token's key id (kid) must be a string.")
    for name in TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise Unauthorized(f"The token's {name} must be a number of seconds.")
    return header, claims


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    exp: int
    nbf: int | None
    kid: str | None = None
    alg: str = ""
    key: Any = None


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Where a token carries the role, the scopes and the employee id: a claim name or a dotted path.

    The service's own names (`role`, `scope`) keep their strict types (a string); a configured name may also
    hold an array of strings, as identity providers write them (Entra ID's `roles`, Okta's `scp`).
    """

    role: str = "role"
    scope: str | None = "scope"  # None: the role alone gives the scopes
    employee: str = "emp"

    @classmethod
    def from_settings(cls, settings: Settings) -> ClaimNames:
        return cls(settings.jwt_role_claim, settings.jwt_scope_claim, settings.jwt_employee_claim)


DEFAULT_CLAIMS = ClaimNames()
_MISSING = object()


def claim(claims: dict[str, Any], name: str) -> Any:
    """The claim at `name`: a top-level claim of that exact name, else a dotted path through nested objects.

    Each step takes the longest run of dotted parts that names a key, so namespaced claims that hold dots
    (`https://example.com/roles`) are found as well as `realm_access.roles` and `resource_access.my.app.roles`.
    """

    def walk(node: Any, parts: list[str]) -> Any:
        if not parts:
            return node
        if not isinstance(node, dict):
            return _MISSING
        for end in range(len(parts), 0, -1):
            key = ".".join(parts[:end])
            if key in node:
                found = walk(node[key], parts[end:])
                if found is not _MISSING:
                    return found
        return _MISSING

    return walk(claims, name.split("."))


def _strings(value: Any, *, what: str, allow_list: bool) -> list[str]:
    if isinstance(value, str):
        return [value]
    if allow_list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    shape = "a string or a list of strings" if allow_list else "a string"
    raise Unauthorized(f"The token's {what} claim must be {shape}.")


def _pick_role(names: list[str]) -> str:
    """The one role of this service among a token's roles; several only if one covers all the others."""
    known = sorted({n for n in names if n in ROLE_SCOPES})
    if not known:
        raise Unauthorized("The token's role is unknown.")
    if len(known) == 1:
        return known[0]
    for candidate in known:
        covers = all(ROLE_SCOPES[candidate] >= ROLE_SCOPES[r] for r in known)
        reach = candidate in UNRESTRICTED_ROLES or not any(r in UNRESTRICTED_ROLES for r in known)
        if covers and reach:
            return candidate
    raise Unauthorized(f"The token names several roles of this service ({', '.join(known)}); it must name one.")


def build_key(entry: dict[str, Any], alg: str) -> Any:
    """A python-jose key from a JWK, for app/core/jwks.py (which does not import python-jose itself)."""
    try:
        return jwk.construct(entry, alg)
    except (JOSEError, TypeError, KeyError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


class TokenVerifier:
    """Verifies tokens against pinned algorithms and preloaded keys (parsed once, not per request).

    `clock` gives the time (epoch seconds) that exp and nbf are checked against on every use of a
    remembered token; it is real time, like python-jose's own check on the first use.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = TOKEN_CACHE_SIZE,
        jwks_clock: Clock | None = None,
    ) -> None:
        self.clock = clock
        self.claim_names = ClaimNames.from_settings(settings)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = threading.Lock()
        self.algorithms = list(settings.jwt_algorithms)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.keys: dict[str | None, Any] = {}
        self.jwks: JwksCache | None = None
        if settings.jwt_jwks_url:
            # Fetched when the first token needs them; the refresh rate follows `jwks_clock` (the app's clock).
            self.jwks = JwksCache.from_settings(settings, build_key, clock=jwks_clock)
            return
        if settings.jwt_jwks_file:
            data = json.loads(settings.jwt_jwks_file.read_text())
            for entry in data.get("keys", []):
                alg = entry.get("alg") or self.algorithms[0]
                if alg not in self.algorithms:
                    continue
                self.keys[entry.get("kid")] = jwk.construct(entry, alg)
        elif settings.uses_hmac:
            self.keys[settings.jwt_key_id] = jwk.construct(
                settings.jwt_secret.get_secret_value().encode(), self.algorithms[0]
            )
        else:
            pem = settings.jwt_public_key
            if pem is None and settings.jwt_public_key_file is not None:
                pem = settings.jwt_public_key_file.read_text()
            assert pem is not None
            self.keys[settings.jwt_key_id] = jwk.construct(pem, self.algorithms[0])

    def _key_for(self, header: dict[str, Any], *, fetch: bool = True) -> Any:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthorized("The token's algorithm is not accepted.")
        kid = header.get("kid")
        if self.jwks is not None:
            if not isinstance(kid, str):
                raise Unauthorized("The token must name its key (kid).")
            return self.jwks.key(kid, alg, fetch=fetch)
        if kid in self.keys:
            return self.keys[kid]
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        raise Unauthorized("The token's key id is unknown.")

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, if its signature, claims and role are valid now; else Unauthorized."""
        return dict(self.principal(token).claims)

    def principal(self, token: str, *, fetch: bool = True) -> Principal:
        """The token's principal; fetch=False (on the event loop) raises RefreshNeeded where keys must be fetched."""
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None:
                self._cache.move_to_end(token)
        if hit is not None and self.jwks is not None:
            try:
                current = self.jwks.key(hit.kid or "", hit.alg, fetch=fetch)
            except Unauthorized:
                with self._lock:
                    self._cache.pop(token, None)
                raise
            if current is not hit.key:  # the provider rotated the key under the same kid: verify afresh
                with self._lock:
                    self._cache.pop(token, None)
                hit = None
        verified = hit or self._verify_signed(token, fetch=fetch)
        try:
            self._check_times(verified)
        except Unauthorized:
            if hit is not None:
                with self._lock:
                    self._cache.pop(token, None)
            raise
        if hit is None and self.cache_size > 0:
            with self._lock:
                self._cache[token] = verified
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return verified.principal

    def _check_times(self, v: _Verified) -> None:
        """python-jose's exp and nbf rules (whole seconds, the same leeway), against `clock`, on every use."""
        now = int(self.clock())
        if v.exp < now - self.leeway or (v.nbf is not None and v.nbf > now + self.leeway):
            raise Unauthorized("The token is invalid or expired.")

    def _verify_signed(self, token: str, *, fetch: bool = True) -> _Verified:
        header, _ = read_token(token)
        key = self._key_for(header, fetch=fetch)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require_exp": True,
                    "require_iat": True,
                    "require_iss": True,
                    "require_aud": True,
                    "require_sub": True,
                    "leeway": self.leeway,
                },
            )
        except (JOSEError, TypeError, ValueError, OverflowError) as exc:
            # read_token leaves python-jose nothing to trip on; any slip of its own is still a bad token.
            raise Unauthorized("The token is invalid or expired.") from exc
        principal = principal_from_claims(claims, self.claim_names)
        # read_token checked that exp (required) and nbf (if present) are finite numbers.
        nbf = int(claims["nbf"]) if "nbf" in claims else None
        return _Verified(principal, int(claims["exp"]), nbf, header.get("kid"), str(header["alg"]), key)


def principal_from_claims(claims: dict[str, Any], names: ClaimNames = DEFAULT_CLAIMS) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("The token has no subject.")
    if len(sub) > MAX_SUBJECT_LENGTH:
        # Actors (role:sub) are stored whole in every audit and *_by column; OIDC subjects fit in 255.
        raise Unauthorized(f"The token's subject is longer than {MAX_SUBJECT_LENGTH} characters.")
    raw_role = claim(claims, names.role)
    if raw_role is _MISSING or raw_role is None:
        raise Unauthorized("The token's role is unknown.")
    if names.role == DEFAULT_CLAIMS.role and not isinstance(raw_role, str):
        raise Unauthorized("The token's role is unknown.")
    role = _pick_role(_strings(raw_role, what="role", allow_list=True))
    raw_scope = _MISSING if names.scope is None else claim(claims, names.scope)
    requested: frozenset[str] | None = None
    if raw_scope is not _MISSING and raw_scope is not None:
        if names.scope == DEFAULT_CLAIMS.scope and not isinstance(raw_scope, str):
            raise Unauthorized("The token's scope claim must be a space-separated string.")
        parts = _strings(raw_scope, what="scope", allow_list=True)
        requested = frozenset(s for part in parts for s in part.split() if s in SCOPES)
    if role == "integration":
        scopes = requested or frozenset()
    else:
        scopes = ROLE_SCOPES[role] if requested is None else ROLE_SCOPES[role] & requested
    emp = claim(claims, names.employee)
    emp = None if emp is _MISSING else emp
    if emp is not None and (not isinstance(emp, str) or not 0 < len(emp) <= MAX_EMPLOYEE_LENGTH):
        raise Unauthorized(f"The token's emp claim must be an employee id of 1 to {MAX_EMPLOYEE_LENGTH} characters.")
    return Principal(sub=sub, role=role, scopes=scopes, employee=emp, claims=claims)


bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="A JWT with exp, iat, iss, aud and sub; scopes come from its role or its scope claim.",
)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, read exactly as HTTPBearer reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if scheme.lower() == "bearer" and token else None


async def authorize(state: Any, token: str, scopes: Iterable[str]) -> Principal:
    """Every check a request passes before a route runs or a stored answer is replayed (`state`: app.state)."""
    verifier: TokenVerifier = state.verifier
    try:
        principal = verifier.principal(token, fetch=False)
    except RefreshNeeded:
        # The identity provider's keys must be fetched: a blocking call (bounded by its timeout), off the loop.
        principal = await run_in_threadpool(verifier.principal, token)
    gate = getattr(state, "employee_gate", None)
    if principal.employee is not None and gate is not None and await run_in_threadpool(gate, principal.employee):
        # A leaver's token that has not expired yet must stop working at the exit time.
        raise Forbidden("The employee this token belongs to has left.")
    missing = [s for s in scopes if s not in principal.scopes]
    if missing:
        raise Forbidden(f"The token lacks the scope(s): {', '.join(missing)}.")
    return principal


async def authenticate(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized()
    principal = await authorize(request.app.state, credentials.credentials, security_scopes.scopes)
    request.state.principal = principal
    return principal


def required_scopes(dependant: Any) -> frozenset[str] | None:
    """The scopes a route's `authenticate` dependencies ask for (None: it takes no token), from FastAPI's tree."""
    found: set[str] | None = None
    stack = [dependant]
    while stack:
        node = stack.pop()
        if node.call is authenticate:
            found = set() if found is None else found
            for attr in ("parent_oauth_scopes", "own_oauth_scopes", "security_scopes"):  # newer and older FastAPI
                found.update(getattr(node, attr, None) or ())
        stack.extend(node.dependencies)
    return None if found is None else frozenset(found)


def _scoped(*scopes: str) -> Any:
    for s in scopes:
        if s not in SCOPES:
            raise ValueError(f"unknown scope {s}")
    return Security(authenticate, scopes=list(scopes))


# Typed aliases per scope set: visible in each route's signature and in OpenAPI.
DirectoryRead = Annotated[Principal, _scoped("directory:read")]
DirectoryWrite = Annotated[Principal, _scoped("directory:write")]
AuditRead = Annotated[Principal, _scoped("audit:read")]
OpsRead = Annotated[Principal, _scoped("ops:read")]
HandoversRead = Annotated[Principal, _scoped("handovers:read")]
HandoversWrite = Annotated[Principal, _scoped("handovers:write")]
HandoversApprove = Annotated[Principal, _scoped("handovers:approve")]
AccessCheckScope = Annotated[Principal, _scoped("access:check")]
AccessAdmin = Annotated[Principal, _scoped("access:admin")]
NotificationsRead = Annotated[Principal, _scoped("notifications:read")]
NotificationsAdmin = Annotated[Principal, _scoped("notifications:admin")]
WebhooksAdmin = Annotated[Principal, _scoped("webhooks:admin")]
RiskRead = Annotated[Principal, _scoped("risk:read")]
RiskAdmin = Annotated[Principal, _scoped("risk:admin")]


def _put(claims: dict[str, Any], path: str, value: Any) -> None:
    """Sets the claim that `claim(claims, path)` reads: a top-level claim, or nested objects along a dotted path."""
    *parents, last = path.split(".") if "://" not in path else [path]
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def mint_token(
    settings: Settings,
    *,
    role: str,
    sub: str,
    emp: str | None = None,
    scope: str | None = None,
    ttl: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
    private_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Signs a token with the configured key (development and tests)."""
    if role not in ROLE_SCOPES:
        raise ValueError(f"unknown role {role!r}; one of {sorted(ROLE_SCOPES)}")
    issued = now or dt.datetime.now(dt.UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    # Under the configured claim names, as the identity provider would write them (a role array at a path).
    names = ClaimNames.from_settings(settings)
    _put(claims, names.role, role if names.role == DEFAULT_CLAIMS.role else [role])
    if emp:
        _put(claims, names.employee, emp)
    if scope is not None and names.scope is not None:
        _put(claims, names.scope, scope)
    if extra:
        claims.update(extra)
    algorithm = settings.jwt_algorithms[0]
    headers = {"kid": settings.jwt_key_id} if settings.jwt_key_id else None
    if settings.uses_hmac:
        key: Any = settings.jwt_secret.get_secret_value()
    else:
        if private_key is None and settings.jwt_private_key_file is not None:
            private_key = settings.jwt_private_key_file.read_text()
        if private_key is None:
            raise ValueError("minting asymmetric tokens needs a private key (HANDOVER_JWT_PRIVATE_KEY_FILE)")
        key = private_key
    return str(jwt.encode(claims, key, algorithm=algorithm, headers=headers))
