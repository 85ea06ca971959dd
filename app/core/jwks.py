"""The identity provider's signing keys, fetched from its JWKS URL (RFC 7517) with httpx and cached.

A fetched set is used for `cache_seconds`; a token whose `kid` is not in it makes the cache fetch again
(a rotation: the provider publishes its new key before it signs with it). Fetches are rate-limited: at
most one attempt per `min_refresh_seconds`, whatever the tokens say, so a flood of made-up `kid`s costs
the provider one request per interval, not one per token. Times come from the injected clock.

Failures never become a 500 or a hang: each fetch has a deadline (httpx's per-phase timeout, and the whole
body must arrive within one more timeout), a size limit and a strict reading of the document. While the
endpoint fails, the last good set stays in use for at most `MAX_STALE_SECONDS` past its cache time; a
token that the cache cannot judge (no set yet, a set too old, or an unknown `kid` while the endpoint
fails) is a 503 with Retry-After, an unknown `kid` against a fresh set is a 401.

Only asymmetric keys for the pinned algorithms are taken (RSA of 2048 bits or more for RS*, EC of the
matching curve for ES*); `oct` keys, encryption keys (`use: enc`) and keys without a `kid` are skipped,
so no JWKS entry can ever be turned into an HMAC secret. The keys themselves are built by the `build`
function that app/core/auth.py hands in: python-jose stays behind that one module.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.core.clock import Clock, SystemClock
from app.core.config import Settings
from app.core.errors import ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 100
MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048  # RFC 7518 3.3
MAX_STALE_SECONDS = 3600.0
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


KeyBuilder = Callable[[dict[str, Any], str], Any]  # (a JWK, an algorithm) → a verification key; ValueError if bad


class JwksError(Exception):
    """The JWKS endpoint failed or answered something that is not a usable key set."""


class RefreshNeeded(Exception):
    """Raised by `key(..., fetch=False)` when a fetch is due: the caller fetches off the event loop and asks again."""


def _usable_algorithms(entry: dict[str, Any], algorithms: list[str]) -> list[str]:
    kty, alg = entry.get("kty"), entry.get("alg")
    if entry.get("use", "sig") != "sig":
        return []
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return []
    if kty == "RSA":
        fits = [a for a in algorithms if a.startswith("RS")]
    elif kty == "EC":
        fits = [a for a in algorithms if a.startswith("ES") and CURVES.get(a) == entry.get("crv")]
    else:  # oct (an HMAC secret), OKP and anything else: never
        return []
    if alg is not None:
        return [alg] if alg in fits else []
    return fits


def _rsa_bits(entry: dict[str, Any]) -> int:
    """The size of an RSA JWK's modulus (`n`, base64url), 0 if it is not one."""
    n = entry.get("n")
    if not isinstance(n, str):
        return 0
    try:
        return int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big").bit_length()
    except (binascii.Error, ValueError):
        return 0


def parse_jwks(raw: bytes, algorithms: list[str], build: KeyBuilder) -> dict[str, dict[str, Any]]:
    """kid → {algorithm → key} for every usable key; JwksError if the document is not a JWKS with one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise JwksError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError('not a JWKS (an object with a "keys" list)')
    if len(data["keys"]) > MAX_KEYS:
        raise JwksError(f"more than {MAX_KEYS} keys")
    keys: dict[str, dict[str, Any]] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
            continue
        for alg in _usable_algorithms(entry, algorithms):
            if alg.startswith("RS") and (size := _rsa_bits(entry)) < MIN_RSA_BITS:
                log.warning("jwks key skipped", extra={"kid": kid, "alg": alg, "error": f"RSA key of {size} bits"})
                continue
            try:
                keys.setdefault(kid, {})[alg] = build(entry, alg)
            except ValueError as exc:
                log.warning("jwks key skipped", extra={"kid": kid, "alg": alg, "error": str(exc)})
        if kid in keys and not keys[kid]:
            del keys[kid]
    if not keys:
        raise JwksError(f"no key usable with the pinned algorithms {algorithms}")
    return keys


@dataclass
class _State:
    keys: dict[str, dict[str, Any]]
    fetched_at: float | None = None  # the clock's time of the last good fetch
    attempted_at: float | None = None  # the clock's time of the last fetch, good or not
    error: str | None = None  # why the last fetch failed; None when it succeeded


class JwksCache:
    """The key set of one JWKS URL: fetched on demand, cached, refreshed on an unknown kid, rate-limited."""

    def __init__(
        self,
        url: str,
        algorithms: list[str],
        build: KeyBuilder,
        *,
        timeout_seconds: float = 5.0,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.algorithms = list(algorithms)
        self.build = build
        self.timeout = timeout_seconds
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.clock = clock or SystemClock()
        self.fetches = 0  # attempts made, for tests and metrics
        self._state = _State(keys={})
        self._lock = threading.Lock()
        self._transport = transport

    @classmethod
    def from_settings(cls, settings: Settings, build: KeyBuilder, *, clock: Clock | None = None) -> JwksCache:
        assert settings.jwt_jwks_url is not None
        return cls(
            settings.jwt_jwks_url,
            settings.jwt_algorithms,
            build,
            timeout_seconds=settings.jwt_jwks_timeout_seconds,
            cache_seconds=settings.jwt_jwks_cache_seconds,
            min_refresh_seconds=settings.jwt_jwks_min_refresh_seconds,
            clock=clock,
        )

    def _now(self) -> float:
        return self.clock.now().timestamp()

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._state.keys)

    def _due(self, state: _State, kid: str, now: float) -> bool:
        if state.attempted_at is not None and now - state.attempted_at < self.min_refresh_seconds:
            return False  # the rate limit: at most one attempt per interval
        if state.fetched_at is None or kid not in state.keys:
            return True
        return now - state.fetched_at >= self.cache_seconds

    def key(self, kid: str, alg: str, *, fetch: bool = True) -> Any:
        """The key for a token's kid and alg; Unauthorized if the set has none, ServiceUnavailable if unknowable.

        fetch=False raises RefreshNeeded instead of fetching (the caller is on the event loop).
        """
        now = self._now()
        if self._due(self._state, kid, now):
            if not fetch:
                raise RefreshNeeded
            self.refresh(kid)
            now = self._now()
        state = self._state
        retry = {"Retry-After": str(max(1, round(self.min_refresh_seconds)))}
        if state.fetched_at is None:
            raise ServiceUnavailable("The identity provider's keys could not be fetched; retry shortly.", headers=retry)
        if now - state.fetched_at > self.cache_seconds + MAX_STALE_SECONDS:
            raise ServiceUnavailable(
                "The identity provider's keys are out of date and could not be refreshed; retry shortly.", headers=retry
            )
        by_alg = state.keys.get(kid)
        if by_alg is None:
            if state.error is not None:
                # The set may simply be older than the token's key: that is not the caller's fault.
                raise ServiceUnavailable(
                    "The token's key id is not among the identity provider's known keys, which could not be"
                    " refreshed; retry shortly.",
                    headers=retry,
                )
            raise Unauthorized("The token's key id is unknown.")
        key = by_alg.get(alg)
        if key is None:
            raise Unauthorized("The token's algorithm does not fit its key.")
        return key

    def refresh(self, kid: str | None = None) -> bool:
        """Fetches the set if still due (one fetch at a time; callers that waited see its result). True: it changed."""
        if not self._lock.acquire(timeout=3 * self.timeout + 1):
            return False  # another fetch is stuck past its deadline: answer from what there is
        try:
            now = self._now()
            state = self._state
            if kid is not None and not self._due(state, kid, now):
                return False
            if kid is None and state.attempted_at is not None and now - state.attempted_at < self.min_refresh_seconds:
                return False
            self.fetches += 1
            try:
                keys = parse_jwks(self._download(), self.algorithms, self.build)
            except JwksError as exc:
                self._state = _State(state.keys, state.fetched_at, now, str(exc))
                log.warning("jwks fetch failed", extra={"url": self.url, "error": str(exc)})
                return False
            changed = keys.keys() != state.keys.keys()
            self._state = _State(keys, now, now, None)
            if changed:
                log.info(
                    "jwks keys changed",
                    extra={
                        "url": self.url,
                        "added": sorted(keys.keys() - state.keys.keys()),
                        "removed": sorted(state.keys.keys() - keys.keys()),
                    },
                )
            return changed
        finally:
            self._lock.release()

    def _download(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        try:
            # A client per fetch (at most one per refresh interval): nothing to close when an app stops.
            with (
                httpx.Client(
                    timeout=httpx.Timeout(self.timeout),
                    follow_redirects=False,
                    transport=self._transport,
                    headers={"Accept": "application/jwk-set+json, application/json"},
                    trust_env=False,
                ) as http,
                http.stream("GET", self.url) as response,
            ):
                if response.status_code != 200:
                    raise JwksError(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise JwksError(f"not received within {self.timeout} s")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise JwksError(f"{type(exc).__name__}: {exc}") from None
