"""The page behind a client's acknowledgment link: pure (no database), escaped, no external assets.

GET shows the page with a confirm button, and records nothing: mail security scanners follow every link in a
message, and must not acknowledge for the client. The button POSTs to the same URL (with the same `sig`), which
records the acknowledgment. Text in zh-CN or English, by the notification's locale (chosen from the contact's).
The one inline style is allowed by its hash in a strict Content-Security-Policy: no script, no other origin.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape

CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f5;color:#222}"
    "main{max-width:32rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px}"
    "h1{font-size:1.4rem}button{font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:4px;"
    "background:#0b5cad;color:#fff;cursor:pointer}"
)
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the link carries its signature
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Texts:
    lang: str
    title: str
    ask: str
    button: str
    done: str
    already: str


TEXTS = {
    "en": Texts(
        lang="en",
        title="Confirm your new account manager",
        ask="Please confirm that you have received the introduction to your new account manager.",
        button="Confirm",
        done="Thank you: your confirmation has been recorded.",
        already="This introduction was already acknowledged. Thank you.",
    ),
    "zh-CN": Texts(
        lang="zh-CN",
        title="确认您的新客户经理",
        ask="请确认您已收到新客户经理的介绍。",
        button="确认",
        done="谢谢，您的确认已记录。",
        already="此介绍已确认过，谢谢。",
    ),
}


def texts_for(locale: str | None) -> Texts:
    return TEXTS["zh-CN"] if (locale or "").lower().split("-", 1)[0] == "zh" else TEXTS["en"]


def page(locale: str | None, *, state: str, action: str) -> str:
    """`state`: "ask" (the confirm button, POSTing to `action`), "done" (just recorded) or "already"."""
    t = texts_for(locale)
    if state == "ask":
        content = (
            f"<p>{escape(t.ask)}</p>"
            f'<form method="post" action="{escape(action, quote=True)}">'
            f'<button type="submit" id="confirm">{escape(t.button)}</button></form>'
        )
    else:
        content = f'<p id="result">{escape(t.done if state == "done" else t.already)}</p>'
    return (
        f'<!doctype html><html lang="{escape(t.lang, quote=True)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{escape(t.title)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{escape(t.title)}</h1>{content}</main></body></html>"
    )
