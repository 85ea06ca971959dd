"""The two outbound channels (HTTP webhooks, SMTP email) and the check that keeps webhooks off private networks.

No database: each sender turns one prepared message into an `Outcome`. Both are small classes with one `send`
method, so the worker can be handed fakes, and tests can use real receivers.

Timeouts: `outbound_timeout_seconds` bounds a whole send, not each socket call. A per-call timeout (which is
what httpx's and smtplib's own timeouts are) lets a receiver that trickles its answer, a byte every half second,
hold one send for as long as it likes: past the worker's lease, so that another worker sends the batch again.
So a webhook request runs under one deadline, set when it starts, that every socket call shares (connect, TLS
handshake, each write and each read get only the time left): it ends within one timeout. Only the host lookup
cannot be cut short; it counts against the deadline, but a lookup that alone outlasts it still runs to its end.
An SMTP conversation is cut off by a timer that shuts its socket down when the time is up: within one timeout,
or two with implicit TLS ("ssl": connect, then the handshake, each bounded by the timeout, before the timer can
reach the socket; connect takes one timeout per address tried, should the SMTP host have several). Either way
the send fails as a timeout, and the worker retries it like any other failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import ipaddress
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpcore
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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d, deprecated (RFC 4291) but still routed by some stacks
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052): the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): where it embeds IPv4 varies
_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")
# Not global, though Python 3.11's `is_global` says they are.
_EXTRA_V6 = (
    ipaddress.ip_network("fec0::/10"),  # site-local (deprecated, still routable inside a site)
    ipaddress.ip_network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.ip_network("5f00::/16"),  # SRv6 SIDs (RFC 9602)
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, which a translator or tunnel would deliver to."""
    if ip.ipv4_mapped is not None:
        return [("IPv4-mapped", ip.ipv4_mapped)]
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1
        return [("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    if ip in _NAT64:
        return [("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    if ip.sixtofour is not None:
        return [("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo  # the client is the inverted last 32 bits: Python has inverted it
        return [("Teredo client", client), ("Teredo server", server)]
    return []


def _ipv4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def address_refusal(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a webhook may not go to `ip` (None: it may); IPv6 forms that embed an IPv4 address are judged by it.

    `allow_loopback` (development and tests) lets 127.0.0.0/8 and ::1 through, nothing else: never a private or
    link-local network, nor loopback spelt as an embedded IPv4.
    """
    if allow_loopback and (ip in _LOOPBACK_V4 if isinstance(ip, ipaddress.IPv4Address) else ip == _LOOPBACK_V6):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip)
    if ip in _NAT64_LOCAL:
        return "NAT64 local-use prefix"
    embedded = _embedded_ipv4(ip)
    for form, v4 in embedded:
        reason = _ipv4_refusal(v4)
        if reason is not None:
            return f"{form} IPv4 address: {reason}"
    if embedded:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_site_local or any(ip in net for net in _EXTRA_V6):
        return "site-local" if ip.is_site_local else "reserved"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"  # unique-local fc00::/7, documentation 2001:db8::/32, ORCHID, discard-only, ...
    if not ip.is_global:
        return "not globally routable"
    return None


def resolve_target(url: str, *, allow_loopback: bool) -> Target:
    """Resolves the host and checks every address it has: one refused address is enough to refuse the URL."""
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
    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address), allow_loopback=allow_loopback)
        if reason is not None:
            raise TargetRefused(f"the host {host} resolves to a private, loopback or link-local address ({reason})")
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


# ---- one deadline per webhook request ---------------------------------------------------------

# time.monotonic() by which the request under way on this thread must be done; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("outbound_deadline", default=None)


def _budget(timeout: float | None, expired: type[Exception]) -> float | None:
    """The time one socket call may take: its own timeout, cut to what is left of the request's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every socket call gets only the time left before the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))  # one recv()

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is None:  # pragma: no cover - the sync backend always has one
            self._inner.write(buffer, _budget(timeout, httpcore.WriteTimeout))
            return
        # httpcore's own loop gives every send() the whole timeout; a receiver that reads slowly could then
        # stretch one write over many. Here each send() gets what is left.
        view = memoryview(buffer)
        while view:
            try:
                sock.settimeout(_budget(timeout, httpcore.WriteTimeout))
                sent = sock.send(view)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpcore.WriteError(str(exc)) from exc
            view = view[sent:]

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # The handshake is one call: Python's ssl module holds all of it to the socket's timeout.
        inner = self._inner.start_tls(ssl_context, server_hostname, _budget(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        # One address (the channel pins the checked one), so one connect() within the budget.
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, budget, local_address, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport (its error mapping, its response streams) over sockets that honour the deadline.

    httpx offers an overall timeout neither per request nor per client, and no way to hand httpcore a network
    backend, so the pool it built is replaced by one with the deadline backend. If a future httpx stops using
    `_pool`, tests/notify/test_slow_receivers.py fails.
    """

    def __init__(self) -> None:
        # trust_env=False: no proxy, and no certificate settings, from the environment.
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=10,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(),
        )


class HttpWebhookChannel:
    """POSTs to the address that was checked (no second lookup a rebinding DNS could answer differently).

    A request that has no complete answer within `outbound_timeout_seconds` of its start is cut off, its
    connection closed, and it fails as a timeout (see the module docstring).
    """

    def __init__(self, settings: Settings) -> None:
        self.allow_loopback = settings.webhook_allow_loopback
        self.timeout = settings.outbound_timeout_seconds
        # trust_env=False: no proxy from the environment may carry requests past the address check.
        self.client = httpx.Client(
            transport=_DeadlineTransport(),
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT},
        )

    def send(self, url: str, headers: dict[str, str], body: bytes, now: dt.datetime) -> Outcome:
        started = time.perf_counter()
        deadline = _deadline.set(time.monotonic() + self.timeout)
        try:
            return self._send(url, headers, body, now, started)
        finally:
            _deadline.reset(deadline)

    def _send(self, url: str, headers: dict[str, str], body: bytes, now: dt.datetime, started: float) -> Outcome:
        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = resolve_target(url, allow_loopback=self.allow_loopback)
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
            error = f"timeout: no complete answer within {self.timeout:g} s ({type(exc).__name__})"
            return Outcome(ok=False, duration_ms=elapsed(), error=error)
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


class _Watchdog:
    """Shuts an SMTP conversation's socket down once its time is up; smtplib's timeout is only per socket call.

    The blocked call then sees the connection end, and smtplib raises `SMTPServerDisconnected`. The watchdog
    shuts down its own duplicate of the socket's descriptor (closed only here), never one smtplib may have
    closed meanwhile and the process reused for something else.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already gone
                self._sock.shutdown(socket.SHUT_RDWR)


class _WatchedSMTP(smtplib.SMTP):
    """Hands its socket to a watchdog as soon as it is connected, before the server's greeting is read."""

    def __init__(self, watchdog: _Watchdog, *args: Any, **kwargs: Any) -> None:
        self.watchdog = watchdog
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.watchdog.watch(sock)
        return sock


class _WatchedSMTPSSL(_WatchedSMTP, smtplib.SMTP_SSL):
    pass


class SmtpEmailChannel:
    """One SMTP conversation per message: simple, and a broken connection cannot poison the next message.

    A conversation is cut off after `outbound_timeout_seconds` (two for implicit TLS; see the module docstring).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _connect(self, watchdog: _Watchdog) -> smtplib.SMTP:
        s = self.settings
        assert s.smtp_host is not None
        timeout = s.outbound_timeout_seconds
        if s.smtp_tls == "ssl":
            context = ssl.create_default_context()
            return _WatchedSMTPSSL(watchdog, s.smtp_host, s.smtp_port, timeout=timeout, context=context)
        smtp = _WatchedSMTP(watchdog, s.smtp_host, s.smtp_port, timeout=timeout)
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
        with _Watchdog(s.outbound_timeout_seconds) as watchdog:
            try:
                smtp = self._connect(watchdog)
                try:
                    if s.smtp_user:
                        password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                        smtp.login(s.smtp_user, password)
                    refused = smtp.send_message(message)
                finally:
                    # Accepted is accepted: a QUIT that goes wrong (or is cut off) must not make it a failure
                    # and send the message again.
                    with contextlib.suppress(smtplib.SMTPException, OSError):
                        smtp.quit()
                    smtp.close()
            except (smtplib.SMTPException, OSError) as exc:
                return self._failed(exc, elapsed(), cut_off=watchdog.expired)
        if refused:
            return Outcome(ok=False, duration_ms=elapsed(), error=f"recipient refused: {refused}"[:500])
        return Outcome(ok=True, duration_ms=elapsed())

    def _failed(self, exc: Exception, duration_ms: int, *, cut_off: bool) -> Outcome:
        if cut_off or isinstance(exc, TimeoutError):
            # Checked first: a reply cut off mid-way can look like anything, even a two-digit "code".
            error = f"timeout: no complete SMTP exchange within {self.settings.outbound_timeout_seconds:g} s"
            return Outcome(ok=False, duration_ms=duration_ms, error=f"{error} ({type(exc).__name__})")
        if isinstance(exc, smtplib.SMTPResponseException):
            detail = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return Outcome(
                ok=False,
                duration_ms=duration_ms,
                error=f"SMTP {exc.smtp_code}: {detail}"[:500],
                permanent=exc.smtp_code >= 500,
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            return Outcome(
                ok=False,
                duration_ms=duration_ms,
                error=f"recipient refused: {exc.recipients}"[:500],
                permanent=all(c >= 500 for c in codes),
            )
        return Outcome(ok=False, duration_ms=duration_ms, error=f"{type(exc).__name__}: {exc}"[:500])

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
