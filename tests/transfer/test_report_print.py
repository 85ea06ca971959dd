"""The handover document as a person sees it (issue 16, point 5): the HTML report of a real, executed handover,
printed to PDF by headless Chromium and read back with pdftotext, in the manager's locale (en and zh-CN).

Skipped only when chromium, pdftotext or a Chinese font is missing (.ci/run installs Debian's `chromium`,
`poppler-utils` and `fonts-wqy-microhei` when they are missing).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.notify.events import HandoverStatus, StoredReason
from app.risk.schemas import Band
from app.transfer.models import CHECKLIST_KEYS
from app.transfer.report import CSV_COLUMNS, HandoverReport, to_html
from app.transfer.reporttexts import MESSAGES, REPORT_LOCALES, VALUES, ReportLocale, Texts, choose_locale
from app.transfer.schemas import ItemStatus
from tests.support.book import DEAL_TITLE, INVOICE_TITLE, load_book, set_confidentiality
from tests.support.checklist import complete_checklist
from tests.support.company import EFFECTIVE, approve, employees, plan

PRINT_TIMEOUT = 120.0  # seconds: an upper bound for one print, not a schedule
MANAGER_LEFT = "Leo left before signing"


def squeeze(text: str) -> str:
    """Without whitespace: a printed line may break anywhere, between Chinese characters too."""
    return re.sub(r"\s+", "", text)


def set_manager_languages(http: TestClient, auth: Any, languages: list[str]) -> None:
    m1 = next(e for e in employees() if e["external_id"] == "m1") | {"languages": languages}
    r = http.post("/v1/employees/batch", json={"items": [m1]}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def executed_handover(http: TestClient, auth: Any, clock: ManualClock, hid: int) -> dict[str, Any]:
    """Plan, approve; one client checked and signed by both sides before the effective time; execute at the
    effective time; then the manager signs another for the leaver, with a reason. The strategic client c0 has a
    book (tests/support/book.py) and two confidentiality steps are recorded."""
    load_book(http, auth, "c0")
    plan(http, auth, hid)
    approve(http, auth, hid)
    items = http.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    first, second = items[0], items[1]
    leaver = auth("account_manager", sub="leo", emp="e0")
    r = http.put(
        f"/v1/handovers/{hid}/items/{first['id']}/checklist/client_profile",
        json={"done": True, "note": "profile reviewed"},
        headers=leaver,
    )
    assert r.status_code == 200, r.text
    complete_checklist(http, leaver, hid, first["id"])  # sign-off waits for the required entries
    r = http.post(f"/v1/handovers/{hid}/items/{first['id']}/sign-off", json={"side": "outgoing"}, headers=leaver)
    assert r.status_code == 200, r.text
    successor = auth("account_manager", sub="succ", emp=first["successor"])
    r = http.post(f"/v1/handovers/{hid}/items/{first['id']}/sign-off", json={"side": "incoming"}, headers=successor)
    assert r.status_code == 200, r.text
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    r = http.post(f"/v1/handovers/{hid}/execute", headers=auth())
    assert r.status_code == 200, r.text
    complete_checklist(http, auth("manager", sub="mia", emp="m1"), hid, second["id"])
    r = http.post(
        f"/v1/handovers/{hid}/items/{second['id']}/sign-off",
        json={"side": "outgoing", "reason": MANAGER_LEFT},
        headers=auth("manager", sub="mia", emp="m1"),
    )
    assert r.status_code == 200, r.text
    set_confidentiality(http, auth, hid)
    body = http.get(f"/v1/handovers/{hid}/report", headers=auth()).json()
    assert body["status"] == "executed"
    return body


def print_to_text(html: str, tmp_path: Path) -> tuple[list[str], float]:
    """Chromium prints the page to PDF as a person would print it; pdftotext reads it back, one string per page."""
    chromium = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium when it is missing)")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed (.ci/run installs Debian's poppler-utils when it is missing)")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    if not fonts.strip():
        pytest.skip("no Chinese font (.ci/run installs Debian's fonts-wqy-microhei when it is missing)")
    page, pdf = tmp_path / "report.html", tmp_path / "report.pdf"
    page.write_text(html, encoding="utf-8")
    started = time.monotonic()
    subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # CI runs as root
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=PRINT_TIMEOUT,
    )
    seconds = time.monotonic() - started
    assert pdf.stat().st_size > 0
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return [p for p in text.split("\f") if p.strip()], seconds


def layout_lines(tmp_path: Path) -> list[str]:
    """The printed PDF's text as laid out (`pdftotext -layout`): a table's row on one line."""
    pdf = tmp_path / "report.pdf"
    text = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    return text.splitlines()


EXPECTED: dict[str, dict[str, Any]] = {
    "en": {
        "shown": [
            "Client handover #",
            "Leaver",
            "Manager",
            "Effective time",
            "resignation",
            "executed",
            "Checklist (3/6)",
            "Checklist (0/6)",
            "Client profile",
            "profile reviewed",
            "Handover meeting held",
            "done",
            "not done",
            "Signed by Leo Leaver",
            "Signed by Mia Manager",
            f"Reason: {MANAGER_LEFT}",
            "Not signed yet",
            "Records",
            "No open deals, renewals, overdue invoices, cases, meetings or projects for this client.",
            "Signatures",
            "Successor",
            # c0's book: a deal row (title, amount, stage), the overdue invoice row, the totals, the other sections
            "Key contacts",
            "Contact 0 <c0@client.example>",
            "Open deals",
            "Overdue invoices",
            "Open deal value: EUR 50,000.00; USD 700.00",
            "Outstanding: EUR 1,250.50",
            "Contracts renewing within 90 days",
            "Renewal date",
            "Open cases",
            "Next meetings",
            "Project progress",
            # the confidentiality steps, per handover
            "Confidentiality",
            "NDA reminder acknowledged",
            "signed copy on file",
            "Company data returned",
            "Non-compete notice given",
            "not recorded",
        ],
        "rows": {
            "d-big": [DEAL_TITLE, "EUR 50,000.00", "negotiation", "2026-12-26"],
            "i-late": [INVOICE_TITLE, "EUR 1,250.50", "2026-11-06", "10 days"],
            "p-roll": ["40%"],
        },
        "absent": ["交接清单", "签字人", "尚未签字", "客户档案", "逾期发票", "保密事项"]
        + ["Kick-off", "Last year", "k-far"],
    },
    "zh-CN": {
        "shown": [
            "客户交接 #",
            "离职人员",
            "经理",
            "生效时间",
            "辞职",
            "已执行",
            "交接清单（3/6）",
            "交接清单（0/6）",
            "客户档案",
            "profile reviewed",  # notes as recorded
            "已召开交接会议",
            "已完成",
            "未完成",
            "签字人：Leo Leaver",
            "签字人：Mia Manager",
            f"原因：{MANAGER_LEFT}",
            "尚未签字",
            "交接记录",
            "此客户没有进行中的商机、续约、逾期发票、工单、会议或项目。",
            "继任者",
            "主要联系人",
            "Contact 0 <c0@client.example>",
            "进行中的商机",
            "逾期发票",
            "进行中商机总额：EUR 50,000.00; USD 700.00",
            "未付总额：EUR 1,250.50",
            "90 天内续约的合同",
            "续约日期",
            "未结工单",
            "即将举行的会议",
            "项目进展",
            "保密事项",
            "已确认保密协议提醒",
            "signed copy on file",
            "已归还公司数据",
            "已告知竞业限制义务",
            "未记录",
        ],
        "absent": [
            "Checklist (",
            "Signed by",
            "Not signed yet",
            "Client profile",
            "Effective time",
            "Open deals",
            "Overdue invoices",
            "Confidentiality",
            "Kick-off",
            "k-far",
        ],
        # Printed rows (pdftotext -layout keeps a table row on one line): the record's id, then cells of its row.
        "rows": {
            "d-big": [DEAL_TITLE, "EUR 50,000.00", "negotiation", "2026年12月26日"],
            "i-late": [INVOICE_TITLE, "EUR 1,250.50", "2026年11月06日", "10 天"],
            "p-roll": ["40%"],
        },
    },
}


@pytest.mark.parametrize(("languages", "locale"), [(["en", "zh"], "en"), (["zh-CN", "en"], "zh-CN")])
def test_the_printed_document_in_the_managers_locale(
    client: TestClient,
    auth: Any,
    clock: ManualClock,
    open_handover: int,
    tmp_path: Path,
    languages: list[str],
    locale: str,
) -> None:
    set_manager_languages(client, auth, languages)
    body = executed_handover(client, auth, clock, open_handover)
    assert body["locale"] == locale
    r = client.get(f"/v1/handovers/{open_handover}/report", headers=auth() | {"Accept": "text/html"})
    assert r.status_code == 200, r.text
    assert r.headers["content-language"] == locale and f'<html lang="{locale}">' in r.text
    pages, seconds = print_to_text(r.text, tmp_path)
    print(f"chromium printed {len(pages)} pages in {seconds:.1f} s ({locale})")
    whole = squeeze("".join(pages))
    for needle in EXPECTED[locale]["shown"]:
        assert squeeze(needle) in whole, needle
    for needle in EXPECTED[locale]["absent"]:
        assert squeeze(needle) not in whole, needle
    # A record row as printed: its cells on the line of its id (the deal with amount and stage, the overdue invoice
    # with its outstanding amount and days overdue).
    lines = layout_lines(tmp_path)
    for record, cells in EXPECTED[locale]["rows"].items():
        row = [squeeze(line) for line in lines if record in line]
        assert len(row) == 1, (record, row)
        for cell in cells:
            assert squeeze(cell) in row[0], (record, cell, row[0])
    # The dates as the locale writes them.
    effective = EFFECTIVE.astimezone(dt.UTC)
    date = effective.strftime("%Y-%m-%d") if locale == "en" else effective.strftime("%Y年%m月%d日")
    assert squeeze(date) in whole
    # Every client with its successor, each client's section on a page of its own, then the signatures page.
    items = body["items"]
    assert len(items) == 8 and len(pages) >= len(items) + 1
    page_of = {}
    for item in items:
        heading = squeeze(item["client_name"] + item["client"])  # the section's heading: name, then id
        holding = [i for i, page in enumerate(pages) if heading in squeeze(page)]
        assert len(holding) == 1, (item["client_name"], holding)
        page_of[item["client"]] = holding[0]
        successor = item["successor"] or item["interim_owner"]
        assert successor and squeeze(successor["name"]) in squeeze(pages[holding[0]]), item
    assert len(set(page_of.values())) == len(items)
    signatures = squeeze(pages[-1])
    assert squeeze(MESSAGES[locale]["signatures"]) in signatures and "LeoLeaver" in signatures
    assert "MiaManager" in signatures
    for s in body["successors"]:
        assert squeeze(s["employee"]["name"]) in signatures


def test_the_locale_parameter_overrides_the_managers(
    client: TestClient, auth: Any, clock: ManualClock, open_handover: int
) -> None:
    set_manager_languages(client, auth, ["en"])
    body = executed_handover(client, auth, clock, open_handover)
    url = f"/v1/handovers/{open_handover}/report"
    assert body["locale"] == "en"
    r = client.get(url, params={"format": "html", "locale": "zh-CN"}, headers=auth())
    assert r.status_code == 200 and r.headers["content-language"] == "zh-CN"
    assert "交接清单" in r.text and "Checklist (" not in r.text
    r = client.get(url, params={"format": "html", "locale": "en"}, headers=auth())
    assert r.headers["content-language"] == "en" and "Checklist (" in r.text
    # JSON keeps its shape and English values in every locale; it says which locale the HTML uses.
    zh = client.get(url, params={"locale": "zh-CN"}, headers=auth()).json()
    HandoverReport.model_validate(zh)
    assert zh["locale"] == "zh-CN" and {k: v for k, v in zh.items() if k != "locale"} == {
        k: v for k, v in body.items() if k != "locale"
    }
    assert {item["client"] for item in zh["items"] if item["records"]} == {"c0"}
    c0 = next(item for item in zh["items"] if item["client"] == "c0")
    assert c0["records"][0]["section"] == "deal" and c0["records"][0]["stage"] == "negotiation"  # not translated
    assert zh["items"][0]["checklist"][0]["label"] == "Client profile"
    # CSV is machine-stable: the same bytes in both locales, English column ids.
    en_csv = client.get(url, params={"format": "csv", "locale": "en"}, headers=auth()).content
    zh_csv = client.get(url, params={"format": "csv", "locale": "zh-CN"}, headers=auth()).content
    assert en_csv == zh_csv
    assert next(csv.reader(io.StringIO(en_csv.decode("utf-8-sig")))) == list(CSV_COLUMNS)
    r = client.get(url, params={"format": "html", "locale": "fr"}, headers=auth())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "locale"]


def test_a_manager_who_reads_zh_gets_zh_cn_and_one_without_languages_the_default(
    client: TestClient, auth: Any, open_handover: int
) -> None:
    url = f"/v1/handovers/{open_handover}/report"
    set_manager_languages(client, auth, ["zh"])
    assert client.get(url, headers=auth()).json()["locale"] == "zh-CN"
    set_manager_languages(client, auth, ["fr", "de"])
    assert client.get(url, headers=auth()).json()["locale"] == "en"
    set_manager_languages(client, auth, [])
    r = client.get(url, params={"format": "html"}, headers=auth())
    assert r.headers["content-language"] == "en" and "not planned yet" in r.text


def test_choose_locale() -> None:
    assert choose_locale(None, ["zh-TW"], "en") == "zh-CN"  # same language
    assert choose_locale(None, ["fr"], "zh-CN") == "zh-CN"  # the service default
    assert choose_locale(None, ["fr"], "fr") == "en"  # a default the document is not written in
    assert choose_locale("en", ["zh-CN"], "zh-CN") == "en"
    assert choose_locale(None, None, "en") == "en"


def test_every_locale_has_every_message_and_value() -> None:
    keys = set(MESSAGES["en"])
    for locale in REPORT_LOCALES:
        assert set(MESSAGES[locale]) == keys, locale
    assert set(REPORT_LOCALES) == set(get_args(ReportLocale))
    shown = {
        *get_args(HandoverStatus),
        *get_args(ItemStatus),
        *get_args(StoredReason),
        *get_args(Band),
        "strategic",
        "key",
        "standard",
        "prospect",
        *CHECKLIST_KEYS,
    }
    for locale, values in VALUES.items():
        assert shown <= set(values), (locale, shown - set(values))
    assert Texts("zh-CN").when("2026-11-16T09:00:00Z") == "2026年11月16日 09:00（UTC）"
    assert Texts("en").when("2026-11-16T17:30:00+08:00") == "2026-11-16 09:30 UTC"


def test_records_render_in_the_clients_section_escaped() -> None:
    """The HTML shows the records the book lists (as text: a CRM title is never markup, a link is escaped)."""
    item = {
        "id": 1,
        "client": "c-1",
        "client_name": "Acme",
        "tier": "key",
        "status": "approved",
        "successor": None,
        "interim_owner": None,
        "transferred_to": None,
        "needs_attention": False,
        "attention_reason": None,
        "risk_band": None,
        "risk_score": None,
        "checklist": [],
        "checklist_done": 0,
        "sign_offs": [],
        "transferred_at": None,
        "records": [
            {
                "section": "renewal",
                "kind": "contract",
                "external_id": "k-1",
                "title": "<b>Renewal</b> due in March",
                "owner": "e0",
                "stage": None,
                "due_at": "2027-03-01T00:00:00Z",
                "amount": 1000.0,
                "currency": "EUR",
                "progress": None,
                "url": "https://crm.example.com/k/1?a=1&b=<2>",
                "days_overdue": None,
            }
        ],
    }
    report = {
        "id": 1,
        "status": "approved",
        "reason": "resignation",
        "destination_competitor": None,
        "effective_at": "2026-11-16T09:00:00Z",
        "approved_by": None,
        "approved_at": None,
        "executed_at": None,
        "cancelled_at": None,
        "view": "all",
        "leaver": {"id": "e0", "name": "Leo", "email": None, "title": None},
        "manager": None,
        "counts": {"items": 1, "by_tier": {"key": 1}, "with_successor": 0, "interim": 0, "signed_both": 0}
        | {"checklist_complete": 0},
        "successors": [],
        "items": [item],
        "generated_at": None,
        "locale": "zh-CN",
    }
    page = to_html(report)
    assert "交接记录" in page and "&lt;b&gt;Renewal&lt;/b&gt; due in March" in page and "<b>" not in page
    assert "此客户没有进行中的商机" not in page and "90 天内续约的合同" in page and "2027年03月01日" in page
    assert 'href="https://crm.example.com/k/1?a=1&amp;b=&lt;2&gt;"' in page
    # No confidentiality step recorded: each is shown as not recorded.
    assert page.count("未记录") == 3
