"""The two outbound channels (HTTP webhooks, SMTP email) and the check that keeps webhooks off private networks.

No database: each sender turns one prepared message into an `Outcome`, with a timeout on every call. Both are
small classes with one `send` method, so the worker can be handed fakes, and tests can use real receivers.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.core.config import Settings

MAX_RETRY_AFTER = dt.timedelta(days=1)
EXCERPT_CHARS = 1000
USER_AGENT = "handover-service-webhooks/1"


class TargetRefused(Exception):
    """A webhook URL that is malformed, does not resolve, or reaches a private, loopback or link-local address."""


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_unspecified


def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Resolves the host and checks every address it has: one private address is enough to refuse."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must be http or https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"the host {host} does not resolve") from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise TargetRefused(f"the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            if _forbidden(ipaddress.ip_address(address)):
                raise TargetRefused(f"the host {host} resolves to a private, loopback or link-local address")
    return Target(url=url, host=host, port=port, addresses=addresses)


@dataclass(frozen=True)
class Outcome:
    """What one attempt achieved; only a 2xx answer (or an accepted email) is `ok`."""

    ok: bool
    duration_ms: int = 0
    http_status: int | None = None
    error: str | None = None
    retry_after: dt.timedelta | None = None
    gone: bool = False  # 410: the receiver asked us to stop
    permanent: bool = False  # retrying cannot help (an SMTP 5xx, a refused target)
    excerpt: str | None = None


def parse_retry_after(value: str | None, now: dt.datetime) -> dt.timedelta | None:
    """Seconds or an HTTP date, capped at a day so a receiver cannot park a message for ever."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        delay = dt.timedelta(seconds=int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        delay = when - now
    return max(dt.timedelta(0), min(delay, MAX_RETRY_AFTER))


class WebhookChannel(Protocol):
    def send(self, url: str, headers: dict[str, str], body: bytes, now: dt.datetime) -> Outcome: ...

    def close(self) -> None: ...


class EmailChannel(Protocol):
    def send(self, message: EmailMessage) -> Outcome: ...

    def close(self) -> None: ...


class HttpWebhookChannel:
    """POSTs to the address that was checked (no second lookup a rebinding DNS could answer differently)."""

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.webhook_allow_private
        # trust_env=False: no proxy from the environment may carry requests past the address check.
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.outbound_timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    def send(self, url: str, headers: dict[str, str], body: bytes, now: dt.datetime) -> Outcome:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = resolve_target(url, allow_private=self.allow_private)
        except TargetRefused as exc:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"refused: {exc}")
        parts = urlsplit(url)
        address = target.addresses[0]
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        try:
            response = self.client.post(
                pinned,
                content=body,
                headers={**headers, "host": host_header, "content-type": "application/json"},
                extensions={"sni_hostname": target.host} if parts.scheme == "https" else {},
            )
        except httpx.TimeoutException as exc:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
        code = response.status_code
        excerpt = response.text[:EXCERPT_CHARS] if response.content else None
        if 200 <= code < 300:
            return Outcome(ok=True, duration_ms=elapsed(), http_status=code, excerpt=excerpt)
        return Outcome(
            ok=False,
            duration_ms=elapsed(),
            http_status=code,
            error=f"HTTP {code}",
            retry_after=parse_retry_after(response.headers.get("retry-after"), now),
            gone=code == 410,
            excerpt=excerpt,
        )

    def close(self) -> None:
        self.client.close()


class SmtpEmailChannel:
    """One SMTP conversation per message: simple, and a broken connection cannot poison the next message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        assert s.smtp_host is not None
        timeout = s.outbound_timeout_seconds
        if s.smtp_tls == "ssl":
            return smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=ssl.create_default_context())
        smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
        if s.smtp_tls == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, message: EmailMessage) -> Outcome:
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        s = self.settings
        if not s.smtp_host:
            return Outcome(ok=False, duration_ms=elapsed(), error="SMTP is not configured (HANDOVER_SMTP_HOST)")
        try:
            with self._connect() as smtp:
                if s.smtp_user:
                    password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                    smtp.login(s.smtp_user, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            detail = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return Outcome(
                ok=False,
                duration_ms=elapsed(),
                error=f"SMTP {exc.smtp_code}: {detail}"[:500],
                permanent=exc.smtp_code >= 500,
            )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return Outcome(
                ok=False,
                duration_ms=elapsed(),
                error=f"recipient refused: {exc.recipients}"[:500],
                permanent=all(c >= 500 for c in codes),
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
        if refused:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"recipient refused: {refused}"[:500])
        return Outcome(ok=True, duration_ms=elapsed())

    def close(self) -> None:
        return None


def build_email(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    locale: str,
    message_id: str,
    now: dt.datetime,
) -> EmailMessage:
    """UTF-8 subject and body, `Content-Language` = the locale, and a Message-ID that is the same on every try."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(now)
    address = email.utils.parseaddr(sender)[1]
    domain = address.rsplit("@", 1)[-1] if "@" in address else "handover.invalid"
    msg["Message-ID"] = f"<{message_id}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    # base64 for non-ASCII text: no relay on the way needs 8BITMIME, and Chinese text stays intact.
    msg.set_content(body, charset="utf-8", cte=None if body.isascii() else "base64")
    msg["Content-Language"] = locale  # after set_content, which drops every Content-* header
    return msg
