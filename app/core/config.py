"""Settings, read once from the environment (prefix HANDOVER_); refuses unsafe production set-ups."""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.keys import load_private_key, load_public_keys

DEV_JWT_SECRET = "dev-only-insecure-secret-change-me-0123456789abcdef"  # noqa: S105
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANDOVER_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///./handover.db"
    database_pool_size: int = Field(10, ge=1, le=200)
    database_max_overflow: int = Field(10, ge=0, le=200)
    # How long a request waits for a pooled connection before it answers 503 (every connection busy).
    database_pool_timeout_seconds: float = Field(10, gt=0, le=300)
    statement_timeout_ms: int = Field(15_000, ge=100, le=600_000)
    sqlite_busy_timeout_ms: int = Field(10_000, ge=0, le=600_000)

    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_private_key_file: Path | None = None
    jwt_key_id: str | None = None
    jwt_issuer: str = "handover-dev"
    jwt_audience: str = "handover-service"
    jwt_leeway_seconds: int = Field(30, ge=0, le=60)
    # Keys from the identity provider's JWKS URL (app/core/jwks.py): cached, refreshed on an unknown kid, at most
    # one fetch per min_refresh interval, each within the timeout.
    jwt_jwks_url: str | None = Field(None, max_length=2000)
    jwt_jwks_timeout_seconds: float = Field(5.0, gt=0, le=30)
    jwt_jwks_cache_seconds: float = Field(300.0, ge=1, le=86_400)
    jwt_jwks_min_refresh_seconds: float = Field(30.0, ge=1, le=3600)
    # Where the role, the scopes and the employee id are in a token: a claim name, or a dotted path into nested
    # objects (Keycloak's realm_access.roles); a name that itself holds dots (a namespaced claim) is found too.
    jwt_role_claim: str = Field("role", min_length=1, max_length=200, pattern=r"^\S+$")
    # Empty: no scope claim is read, the role alone gives the scopes (for OIDC scopes such as "openid profile").
    jwt_scope_claim: str | None = Field("scope", min_length=1, max_length=200, pattern=r"^\S+$")
    jwt_employee_claim: str = Field("emp", min_length=1, max_length=200, pattern=r"^\S+$")

    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    default_page_size: int = Field(50, ge=1, le=1000)
    max_page_size: int = Field(200, ge=1, le=1000)

    log_level: str = "INFO"

    hr_webhook_secret: SecretStr | None = None  # "whsec_<base64>", several separated by spaces
    successor_exit_horizon_days: int = Field(90, ge=0, le=3650)
    undo_window_days: int = Field(30, ge=0, le=3650)
    load_points: dict[str, float] = Field(
        default_factory=lambda: {"strategic": 5.0, "key": 3.0, "standard": 1.0, "prospect": 0.5}
    )
    # The book in a successor's load (issue 16 point 2), off (0) by default: one load point per this much open deal
    # amount they hold (amounts as recorded, no currency conversion), and this many points per open case.
    load_open_deal_amount_per_point: float = Field(0.0, ge=0, le=1e13)
    load_points_per_open_case: float = Field(0.0, ge=0, le=1000)
    min_seniority: dict[str, int] = Field(
        default_factory=lambda: {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}
    )
    # Exact planning proves optimality; past this many seconds (a mass exit) it returns the best plan found,
    # marked "feasible" with its certified gap. Null: no limit.
    solver_time_limit_seconds: float | None = Field(30.0, gt=0, le=3600)
    # The currency the book's amounts are summed in for risk (open deals, overdue invoices): ISO 4217. Amounts in
    # other currencies are counted, never converted (no exchange rates here) nor added.
    base_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    interim_owner: str | None = None  # fallback interim owner when a leaver has no manager
    # What a handover does with the leaver's records (issue 16 point 2), overridable per handover (`record_rules`):
    # client-less open records go to the leaver's manager (the interim owner rule), or stay ("keep"); meetings due
    # within this many days after the effective time stay with the leaver and the receiver joins them as attendee.
    record_clientless: Literal["manager", "keep"] = "manager"
    meeting_transition_days: int = Field(14, ge=0, le=365)
    worker_interval_seconds: float = Field(5.0, gt=0, le=3600)
    # `handover worker` serves its own metrics (deliveries, pass duration) here; unset: none. 0: any free port.
    worker_metrics_port: int | None = Field(None, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # A job (Prefer: respond-async) a worker runs is its alone this long; past it, another worker runs it again.
    job_lease_seconds: int = Field(600, ge=30, le=86400)

    # Notifications and outbound webhooks (app/notify).
    smtp_host: str | None = None  # unset: email deliveries fail (and retry) until it is configured
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "handover@localhost"
    # Development and tests only (refused in production): lets webhooks reach loopback (127.0.0.0/8, ::1), where
    # local receivers listen; private and link-local networks stay refused. See `webhook_allow_loopback`.
    webhook_allow_private: bool = False
    default_locale: str = Field("en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
    client_intro_days_before: int | None = Field(None, ge=0, le=365)  # None: client intros go at approval
    outbound_timeout_seconds: float = Field(10.0, gt=0, le=120)
    delivery_lease_seconds: int = Field(120, ge=5, le=3600)
    delivery_batch_size: int = Field(50, ge=1, le=1000)
    # Delivery lanes (app/notify/worker.py): each webhook endpoint, and email, is a lane; lanes are sent in
    # parallel (at most this many at once), a lane takes at most `delivery_lane_batch` rows per claim.
    delivery_lanes: int = Field(8, ge=1, le=64)
    delivery_lane_batch: int = Field(20, ge=1, le=1000)
    # Circuit breaker per endpoint: after this many failed attempts in a row the endpoint is paused, first for
    # `delivery_breaker_pause_seconds`, doubling on each further failure after a pause, at most the maximum.
    delivery_breaker_failures: int = Field(5, ge=1, le=1000)
    delivery_breaker_pause_seconds: float = Field(30.0, gt=0, le=86_400)
    delivery_breaker_max_pause_seconds: float = Field(3600.0, gt=0, le=7 * 86_400)
    # Signs the acknowledgment links in client intros. Unset: derived from the (HMAC) JWT secret, which is
    # refused at its built-in value outside development; set it so that rotating the JWT secret keeps links valid.
    ack_link_secret: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8000"  # where the acknowledgment links in client intros point

    # Approval deadlines (app/transfer/deadlines.py): this many working days (Mon-Fri, UTC) before the effective
    # time; the worker reminds the approver from then on, daily, escalating to the approver's manager.
    approval_lead_working_days: int = Field(3, ge=0, le=60)

    # Follow-ups after a handover (app/transfer/followups.py): days after the effective time each one is due.
    follow_up_first_contact_days: int = Field(7, ge=0, le=3650)
    follow_up_check_in_days: int = Field(30, ge=0, le=3650)
    follow_up_survey_days: int = Field(90, ge=0, le=3650)

    # Signed checkpoints of the audit chain's head (app/audit): an Ed25519 key the database does not hold, as a
    # PKCS#8 PEM or the base64 of the 32-byte seed; required in production. Trusted public keys verify checkpoints
    # signed by earlier keys (a rotation); the signing key's own public key is always trusted.
    audit_signing_key: SecretStr | None = None
    audit_signing_key_file: Path | None = None
    audit_trusted_public_keys: str | None = None
    # The worker signs a verified checkpoint when the head has moved and this long has passed or this many
    # entries were added since the last one.
    audit_checkpoint_interval_seconds: float = Field(300.0, gt=0, le=86_400)
    audit_checkpoint_every_entries: int = Field(1000, ge=1, le=10_000_000)

    @field_validator("jwt_scope_claim", mode="before")
    @classmethod
    def _no_scope_claim(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, str):
            return json.loads(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        algorithms = set(self.jwt_algorithms)
        if not algorithms:
            raise ValueError("jwt_algorithms must name at least one algorithm")
        unknown = algorithms - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
        if unknown:
            raise ValueError(f"unsupported JWT algorithms: {sorted(unknown)}")
        if algorithms & HMAC_ALGORITHMS and algorithms & ASYMMETRIC_ALGORITHMS:
            # Mixing families invites key-confusion attacks (an RS public key used as an HMAC secret).
            raise ValueError("jwt_algorithms must not mix HMAC and asymmetric algorithms")
        if algorithms & ASYMMETRIC_ALGORITHMS and not (
            self.jwt_public_key or self.jwt_public_key_file or self.jwt_jwks_file or self.jwt_jwks_url
        ):
            raise ValueError("asymmetric JWT algorithms need jwt_public_key(_file), jwt_jwks_file or jwt_jwks_url")
        self._check_jwks_url(algorithms)
        if self.environment != "development":
            if algorithms & HMAC_ALGORITHMS and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ValueError(
                    "the built-in development JWT secret is refused outside development: set HANDOVER_JWT_SECRET"
                    " (at least 32 characters) or an asymmetric key (HANDOVER_JWT_ALGORITHMS=RS256 and a public key)"
                )
            if algorithms & HMAC_ALGORITHMS and len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("HANDOVER_JWT_SECRET must be at least 32 characters")
        if self.environment != "development":
            if self.ack_link_secret is not None and len(self.ack_link_secret.get_secret_value()) < 32:
                raise ValueError("HANDOVER_ACK_LINK_SECRET must be at least 32 characters")
            if self.ack_link_secret is None and not self.uses_hmac and self.environment == "production":
                # Nothing to derive from: the JWT secret is then the unused built-in one.
                raise ValueError("ack_link_secret is required in production with asymmetric JWT algorithms")
        if self.delivery_lease_seconds < 6 * self.outbound_timeout_seconds:
            # Each send ends within one timeout (one deadline per request, app/notify/channels.py; two for an
            # implicit-TLS SMTP connect), and a worker renews its batch's lease after any send that took a while.
            # The lease must outlast a send and the recording of its result, with room for a host lookup (which
            # cannot be cut short) and a slow database: six timeouts leave that room.
            raise ValueError("delivery_lease_seconds must be at least 6 × outbound_timeout_seconds")
        if self.webhook_allow_private and self.environment == "production":
            # It would open the host's own services (and, were it wider, the cloud metadata address) to webhooks.
            raise ValueError("HANDOVER_WEBHOOK_ALLOW_PRIVATE is refused in production (development and tests only)")
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        self._check_audit_keys()
        return self

    def _check_jwks_url(self, algorithms: set[str]) -> None:
        if self.jwt_jwks_url is None:
            return
        if algorithms & HMAC_ALGORITHMS:
            # A JWKS holds public keys; an HMAC algorithm would let anyone holding them sign.
            raise ValueError("HANDOVER_JWT_JWKS_URL needs asymmetric HANDOVER_JWT_ALGORITHMS (e.g. RS256 or ES256)")
        if self.jwt_public_key or self.jwt_public_key_file or self.jwt_jwks_file:
            raise ValueError(
                "HANDOVER_JWT_JWKS_URL excludes HANDOVER_JWT_PUBLIC_KEY(_FILE) and HANDOVER_JWT_JWKS_FILE:"
                " one key source"
            )
        url = urlsplit(self.jwt_jwks_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError("HANDOVER_JWT_JWKS_URL must be an http(s) URL with a host")
        if url.scheme != "https" and self.environment == "production":
            raise ValueError("HANDOVER_JWT_JWKS_URL must use https in production")
        if self.jwt_jwks_min_refresh_seconds > self.jwt_jwks_cache_seconds:
            raise ValueError("HANDOVER_JWT_JWKS_MIN_REFRESH_SECONDS must not exceed HANDOVER_JWT_JWKS_CACHE_SECONDS")

    def _check_audit_keys(self) -> None:
        """A bad key refuses the start, not the first checkpoint; production does not run unanchored."""
        if self.audit_signing_key is not None and self.audit_signing_key_file is not None:
            raise ValueError("set HANDOVER_AUDIT_SIGNING_KEY or HANDOVER_AUDIT_SIGNING_KEY_FILE, not both")
        if self.audit_signing_key_file is not None and not self.audit_signing_key_file.is_file():
            raise ValueError("HANDOVER_AUDIT_SIGNING_KEY_FILE does not name a readable file")
        private = self.audit_private_key_text
        if private is not None:
            try:
                load_private_key(private)
            except ValueError as exc:
                raise ValueError(f"HANDOVER_AUDIT_SIGNING_KEY: {exc}") from None
        try:
            load_public_keys(self.audit_trusted_public_keys or "")
        except ValueError as exc:
            raise ValueError(f"HANDOVER_AUDIT_TRUSTED_PUBLIC_KEYS: {exc}") from None
        if self.environment == "production" and private is None:
            raise ValueError(
                "HANDOVER_AUDIT_SIGNING_KEY (or _FILE) is required in production: without it nothing anchors the "
                "audit log, and a database writer can truncate or rewrite it undetected "
                "(make one with `openssl genpkey -algorithm ed25519`)"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def audit_private_key_text(self) -> str | None:
        if self.audit_signing_key is not None:
            return self.audit_signing_key.get_secret_value()
        if self.audit_signing_key_file is not None:
            return self.audit_signing_key_file.read_text()
        return None

    @property
    def webhook_allow_loopback(self) -> bool:
        """Webhooks may reach loopback: the setting, and never in production (even on settings built unvalidated)."""
        return self.webhook_allow_private and self.environment != "production"

    @property
    def uses_hmac(self) -> bool:
        return bool(set(self.jwt_algorithms) & HMAC_ALGORITHMS)

    @property
    def ack_link_key(self) -> bytes:
        """The key for acknowledgment links: the configured one, else one derived from the JWT secret."""
        if self.ack_link_secret is not None:
            return self.ack_link_secret.get_secret_value().encode()
        # A derived key, never the JWT secret itself: a link signature cannot be turned into a token.
        jwt_key = self.jwt_secret.get_secret_value().encode()
        return hmac.new(jwt_key, b"handover-service/ack-link/v1", hashlib.sha256).digest()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
