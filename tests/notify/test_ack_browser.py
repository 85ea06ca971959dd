"""The acknowledgment link in a real browser (issue 17, point 5): headless Chromium against a real uvicorn.

Loading the link (what a mail scanner does) records nothing; clicking the page's button does. Chromium is driven
over the Chrome DevTools Protocol on `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON), so
no driver and no extra Python package is needed. Skipped only when no chromium is installed (.ci/run installs
Debian's `chromium` when it is missing).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app.core.clock import ManualClock
from app.core.db import Database, transaction
from app.notify import ackpage, service
from app.notify.models import OutboxMessage
from tests.live import live_server
from tests.support.db import audit_count

INTRO = {
    "contact": {"name": "Ada"},
    "client": {"name": "Acme", "external_id": "c-1"},
    "leaver": {"name": "Leo"},
    "successor": {"name": "Sam", "email": "sam@example.com", "title": None},
    "effective_date": "2026-11-16",
}
WAIT = 30.0  # seconds: an upper bound for the browser to answer, not a schedule


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Headless Chromium with the DevTools Protocol over a pipe; one page (a flattened session)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # Out of the way of 3 and 4, where the child expects them.
        child_in, child_out = fcntl.fcntl(to_r, fcntl.F_DUPFD, 100), fcntl.fcntl(from_w, fcntl.F_DUPFD, 100)
        os.close(to_r)
        os.close(from_w)

        def fds() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self.writer = os.fdopen(to_w, "wb", buffering=0)
        self.reader = os.fdopen(from_r, "rb", buffering=0)
        self.next_id = 0
        self.replies: dict[int, queue.SimpleQueue[dict[str, Any]]] = {}
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=self.session)

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self.reader.read(65536)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self.replies:
                    self.replies[msg["id"]].put(msg)
                else:
                    self.events.put(msg)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None) -> Any:
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            self.replies[mid] = queue.SimpleQueue()
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.writer.write(json.dumps(msg).encode() + b"\0")
        reply = self.replies[mid].get(timeout=WAIT)
        assert "error" not in reply, reply
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            event = self.events.get(timeout=WAIT)
            if event.get("method") == method and event.get("sessionId") == self.session:
                return event

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=self.session)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session)
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release at the element's centre), as a person would."""
        box = self.js(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
            self.call("Input.dispatchMouseEvent", params, session=self.session)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.writer.close()
        self.reader.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium when it is missing)")
    b = Browser(binary, tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def notification(db: Database, clock: ManualClock, locale: str) -> int:
    with transaction(db) as s:
        return service.enqueue(
            s,
            kind="client",
            template="client_intro",
            locale=locale,
            channel="email",
            recipient="ada@client.example",
            data=INTRO,
            not_before=clock.now(),
            handover_id=7,
            client_id="c-1",
            now=clock.now(),
        )


def row(db: Database, nid: int) -> OutboxMessage:
    with db.session(write=False) as s:
        found = s.get(OutboxMessage, nid)
        assert found is not None
        return found


@pytest.mark.parametrize(("locale", "button", "done"), [("en", "Confirm", "recorded"), ("zh-CN", "确认", "已记录")])
def test_loading_the_link_records_nothing_clicking_confirm_does(
    app: FastAPI, db: Database, clock: ManualClock, browser: Browser, locale: str, button: str, done: str
) -> None:
    nid = notification(db, clock, locale)
    message_id = row(db, nid).message_id
    sig = service.ack_signature(app.state.settings, nid, message_id)
    with live_server(app) as base:
        browser.goto(f"{base}/v1/notifications/{nid}/ack?sig={sig}")
        assert browser.js("document.documentElement.lang") == locale
        assert browser.js("document.querySelector('#confirm').textContent") == button
        # The inline style is allowed by its hash in the CSP: the browser applied it (and ran no script of ours).
        assert browser.js("getComputedStyle(document.querySelector('#confirm')).backgroundColor") == "rgb(11, 92, 173)"
        # What a mail scanner does, loading the link, records nothing.
        assert row(db, nid).status == "pending" and row(db, nid).acknowledged_at is None
        assert audit_count(db, "notification.acknowledged") == 0

        browser.click("#confirm")
        browser.wait_event("Page.loadEventFired")
        assert done in browser.js("document.querySelector('#result').textContent")
        acknowledged = row(db, nid)
        assert acknowledged.status == "acknowledged" and acknowledged.acknowledged_at == clock.now()
        assert audit_count(db, "notification.acknowledged") == 1

        # The link again: the page says it is done, with no button; nothing more is recorded.
        browser.goto(f"{base}/v1/notifications/{nid}/ack?sig={sig}")
        assert browser.js("document.querySelector('#confirm')") is None
        assert browser.js("document.querySelector('#result').textContent") == ackpage.texts_for(locale).already
        assert audit_count(db, "notification.acknowledged") == 1

        # A tampered link: a 4xx, nothing recorded, no button.
        browser.goto(f"{base}/v1/notifications/{nid}/ack?sig={sig[:-2]}xx")
        assert browser.js("document.querySelector('#confirm')") is None
        assert "not valid" in browser.js("document.body.textContent")


def test_the_page_is_escaped_and_self_contained() -> None:
    html = ackpage.page("en", state="ask", action='/v1/notifications/1/ack?sig=a"><script>x</script>')
    assert "<script>" not in html and "&quot;&gt;&lt;script&gt;" in html
    assert "http" not in html  # no external asset of any kind
    assert "script-src" not in ackpage.CSP and "default-src 'none'" in ackpage.CSP
