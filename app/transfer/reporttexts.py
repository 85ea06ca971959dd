"""The handover document's words in each language it is printed in: English and Simplified Chinese.

A message catalogue per locale (the same keys in each, a test holds them to that), the labels of the values the
document shows (statuses, tiers, reasons, risk bands, checklist entries) and the date format. The JSON and the CSV
stay machine-stable (English ids); only the HTML a person reads is translated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

from app.notify.service import pick_locale

ReportLocale = Literal["en", "zh-CN"]
REPORT_LOCALES: tuple[ReportLocale, ...] = ("en", "zh-CN")

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Client handover #{id}",
        "subtitle": "Handover of the client portfolio of {leaver}, effective {when}",
        "leaver": "Leaver",
        "manager": "Manager",
        "none": "none",
        "effective": "Effective time",
        "reason": "Reason",
        "competitor": "(moving to a competitor)",
        "status": "Status",
        "approved": "Approved",
        "not_yet": "not yet",
        "executed": "Executed",
        "cancelled": "Cancelled",
        "shown": "Shown",
        "own_only": "Only the clients you receive in this handover",
        "clients": "Clients",
        "clients_summary": "{with_successor} with a successor, {interim} with an interim owner; "
        "{signed_both} signed by both sides; {checklist_complete} with a complete checklist",
        "successors": "Successors",
        "successor": "Successor",
        "email": "E-mail",
        "client_count": "Clients",
        "by_tier": "By tier",
        "interim_owner": "Interim owner",
        "needs_attention": "Needs attention",
        "yes": "yes",
        "risk": "Risk",
        "not_scored": "not scored",
        "transferred": "Transferred",
        "transferred_to": "{when} to {name}",
        "checklist": "Checklist ({done}/{total})",
        "by": "By",
        "when": "When",
        "done": "done",
        "not_done": "not done",
        "sign_offs": "Sign-offs",
        "outgoing": "Outgoing (leaver)",
        "incoming": "Incoming (successor)",
        "signed_by": "Signed by {name}",
        "signed_on": "on {when}",
        "signed_reason": "Reason: {reason}",
        "not_signed": "Not signed yet",
        "date": "date",
        "records": "Records",
        "no_records": "No open deals, renewals, overdue invoices, cases, meetings or projects for this client.",
        "records_as_of": "As of {when}",
        "key_contacts": "Key contacts",
        "sec_deal": "Open deals",
        "sec_renewal": "Contracts renewing within 90 days",
        "sec_overdue_invoice": "Overdue invoices",
        "sec_case": "Open cases",
        "sec_meeting": "Next meetings",
        "sec_project": "Project progress",
        "record_title": "Title",
        "stage": "Stage",
        "amount": "Amount",
        "outstanding": "Outstanding",
        "renewal_date": "Renewal date",
        "due": "Due",
        "days_overdue": "{days} days",
        "overdue": "Overdue",
        "progress": "Progress",
        "held_by": "Held by",
        "open_deal_value": "Open deal value: {value}",
        "outstanding_total": "Outstanding: {value}",
        "confidentiality": "Confidentiality",
        "confidentiality_intro": "Recorded once for the whole handover, not per client.",
        "step_nda_reminder_acknowledged": "NDA reminder acknowledged",
        "step_company_data_returned": "Company data returned",
        "step_non_compete_notice_given": "Non-compete notice given",
        "not_recorded": "not recorded",
        "no_clients": "This handover has no clients (not planned yet).",
        "signatures": "Signatures",
        "confirm": "By signing, each person confirms that the handover of the clients listed above is complete as "
        "recorded.",
        "role": "Role",
        "name": "Name",
        "signature": "Signature",
        "footer": "Handover #{id} · status {status}",
        "generated": "generated {when}",
        "audit_note": "the audit log holds every change recorded here.",
    },
    "zh-CN": {
        "title": "客户交接 #{id}",
        "subtitle": "{leaver} 的客户交接，生效时间 {when}",
        "leaver": "离职人员",
        "manager": "经理",
        "none": "无",
        "effective": "生效时间",
        "reason": "原因",
        "competitor": "（将加入竞争对手）",
        "status": "状态",
        "approved": "批准",
        "not_yet": "尚未批准",
        "executed": "执行时间",
        "cancelled": "已取消",
        "shown": "显示范围",
        "own_only": "仅显示您在本次交接中接收的客户",
        "clients": "客户",
        "clients_summary": "{with_successor} 个有继任者，{interim} 个由临时负责人接管；"
        "{signed_both} 个已由双方签字；{checklist_complete} 个检查清单已全部完成",
        "successors": "继任者",
        "successor": "继任者",
        "email": "电子邮件",
        "client_count": "客户数",
        "by_tier": "按级别",
        "interim_owner": "临时负责人",
        "needs_attention": "需要关注",
        "yes": "是",
        "risk": "风险",
        "not_scored": "未评分",
        "transferred": "已移交",
        "transferred_to": "{when} 移交给 {name}",
        "checklist": "交接清单（{done}/{total}）",
        "by": "操作人",
        "when": "时间",
        "done": "已完成",
        "not_done": "未完成",
        "sign_offs": "签字确认",
        "outgoing": "移交方（离职人员）",
        "incoming": "接收方（继任者）",
        "signed_by": "签字人：{name}",
        "signed_on": "签字时间：{when}",
        "signed_reason": "原因：{reason}",
        "not_signed": "尚未签字",
        "date": "日期",
        "records": "交接记录",
        "no_records": "此客户没有进行中的商机、续约、逾期发票、工单、会议或项目。",
        "records_as_of": "截至 {when}",
        "key_contacts": "主要联系人",
        "sec_deal": "进行中的商机",
        "sec_renewal": "90 天内续约的合同",
        "sec_overdue_invoice": "逾期发票",
        "sec_case": "未结工单",
        "sec_meeting": "即将举行的会议",
        "sec_project": "项目进展",
        "record_title": "名称",
        "stage": "阶段",
        "amount": "金额",
        "outstanding": "未付金额",
        "renewal_date": "续约日期",
        "due": "到期日",
        "days_overdue": "{days} 天",
        "overdue": "逾期",
        "progress": "进度",
        "held_by": "负责人",
        "open_deal_value": "进行中商机总额：{value}",
        "outstanding_total": "未付总额：{value}",
        "confidentiality": "保密事项",
        "confidentiality_intro": "针对整个交接记录一次，而非按客户记录。",
        "step_nda_reminder_acknowledged": "已确认保密协议提醒",
        "step_company_data_returned": "已归还公司数据",
        "step_non_compete_notice_given": "已告知竞业限制义务",
        "not_recorded": "未记录",
        "no_clients": "本次交接没有客户（尚未规划）。",
        "signatures": "签字",
        "confirm": "签字即确认上述客户的交接已按记录完成。",
        "role": "角色",
        "name": "姓名",
        "signature": "签名",
        "footer": "交接 #{id} · 状态：{status}",
        "generated": "生成时间：{when}",
        "audit_note": "审计日志保存了此处记录的每一项变更。",
    },
}

# The values the document shows, by locale; English shows the value itself (underscores as spaces).
VALUES: dict[str, dict[str, str]] = {
    "zh-CN": {
        # handover and item statuses
        "draft": "草稿",
        "planned": "已规划",
        "approved": "已批准",
        "executed": "已执行",
        "scheduled": "已排期",
        "completed": "已完成",
        "cancelled": "已取消",
        "undone": "已撤销",
        "proposed": "已提议",
        "transferred": "已移交",
        "confirmed": "已确认",
        "closed": "已关闭",
        "reverted": "已回退",
        # tiers
        "strategic": "战略客户",
        "key": "重点客户",
        "standard": "标准客户",
        "prospect": "潜在客户",
        # reasons
        "resignation": "辞职",
        "termination": "解除劳动合同",
        "retirement": "退休",
        "role_change": "岗位变动",
        "leave": "休假",
        "other": "其他",
        "unknown": "未知",
        # risk bands
        "low": "低",
        "medium": "中",
        "high": "高",
        "critical": "严重",
        # checklist entries
        "client_profile": "客户档案",
        "contacts": "联系人",
        "open_projects": "进行中的项目及进展",
        "contracts_financials": "合同与财务",
        "open_issues": "未解决的问题与投诉",
        "handover_meeting": "已召开交接会议",
    },
}
DATE_FORMATS = {"en": "%Y-%m-%d %H:%M UTC", "zh-CN": "%Y年%m月%d日 %H:%M（UTC）"}
DAY_FORMATS = {"en": "%Y-%m-%d", "zh-CN": "%Y年%m月%d日"}


def choose_locale(override: str | None, manager_languages: Sequence[str] | None, default: str) -> ReportLocale:
    """The `locale` parameter if given, else the manager's first language the document is written in (zh → zh-CN),
    else the service's default locale if the document has it, else English."""
    if override in REPORT_LOCALES:
        return override
    picked = pick_locale(list(manager_languages or []), set(REPORT_LOCALES), default)
    return picked if picked in REPORT_LOCALES else "en"


class Texts:
    """What the template calls: `t(key, **values)`, `label(value)` and `when(iso)`, in one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in MESSAGES else "en"
        self.messages = MESSAGES[self.locale]
        self.values = VALUES.get(self.locale, {})

    def t(self, key: str, **values: Any) -> str:
        return self.messages[key].format(**values) if values else self.messages[key]

    def label(self, value: str | None) -> str:
        if value is None:
            return ""
        return self.values.get(value, value.replace("_", " "))

    def checklist(self, key: str, fallback: str) -> str:
        """A checklist entry's label: the JSON's English label unless this locale has its own."""
        return self.values.get(key, fallback)

    def money(self, amount: float | None, currency: str | None) -> str:
        """An amount with its currency code, the same in every locale: "EUR 50,000.00"."""
        if amount is None:
            return ""
        return f"{currency or ''} {amount:,.2f}".strip()

    def sums(self, values: dict[str, float]) -> str:
        """Sums per currency, "EUR 50,000.00; USD 10.00"."""
        return "; ".join(self.money(v, c) for c, v in sorted(values.items()))

    def day(self, value: str | None) -> str:
        """The date alone (UTC): "2026-11-16" (en) or "2026年11月16日"."""
        if not value:
            return ""
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
        return moment.strftime(DAY_FORMATS[self.locale])

    def when(self, value: str | None) -> str:
        """ISO 8601 from the JSON document → "2026-11-16 09:00 UTC" (en) or "2026年11月16日 09:00（UTC）"."""
        if not value:
            return ""
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC)
        return moment.strftime(DATE_FORMATS[self.locale])
