"""GET /v1/handovers/{id}/report: the same report as JSON, CSV or printable HTML, chosen by the Accept header."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from app.core.auth import HandoversRead
from app.core.deps import DbSession, Now
from app.core.errors import DomainError, problem_responses
from app.transfer import service
from app.transfer.report import HandoverReport, build_report, to_csv, to_html

router = APIRouter(tags=["handovers"])

HandoverId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The handover id.")]

JSON, CSV, HTML = "application/json", "text/csv", "text/html"
OFFERS = (JSON, HTML, CSV)  # on a tie (e.g. */* or text/*) the first wins


class NotAcceptable(DomainError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


def _ranges(accept: str) -> list[tuple[str, float]]:
    """Accept's media ranges with their q values; malformed ranges are skipped, not fatal."""
    out = []
    for part in accept.split(","):
        fields = part.split(";")
        media = fields[0].strip().lower()
        if media.count("/") != 1:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        out.append((media, q))
    return out


def negotiate(accept: str | None) -> str | None:
    """The offered media type the client prefers (RFC 9110 §12.5.1), or None when none is acceptable."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    best, best_q = None, 0.0
    for offer in OFFERS:
        kind = offer.split("/")[0]
        specificity, q = -1, 0.0
        for media, mq in ranges:
            level = 2 if media == offer else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
            if level > specificity:
                specificity, q = level, mq
        if q > best_q:
            best, best_q = offer, q
    return best


_REPORT_CONTENT: dict[str, Any] = {
    CSV: {"schema": {"type": "string"}, "example": "handover_id,leaver_id,leaver_name,…\r\n"},
    HTML: {"schema": {"type": "string"}, "example": "<!doctype html>…"},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": HandoverReport,
        "description": "The report: JSON (default), CSV (one row per client, UTF-8 with BOM) or printable HTML.",
        "content": _REPORT_CONTENT,
    },
    **problem_responses(401, 403, 404, 406, 422),
}
_RESPONSES[406] = {**_RESPONSES[406], "description": "None of application/json, text/csv, text/html is acceptable."}


@router.get(
    "/v1/handovers/{handover_id}/report",
    name="handovers-report",
    summary="The handover report as JSON, CSV or printable HTML (by Accept)",
    description=(
        "Every client with its successor, interim owner, status, risk, checklist and sign-offs; a participant who "
        "does not manage the handover (a successor or interim owner on another team's handover) gets only their own "
        "clients, counted alone (`view: own`). "
        "`Accept: application/json` (the default, also for `*/*`), `text/csv` (a download, one row per client) "
        "or `text/html` (a document to print and sign). Anything else answers 406."
    ),
    response_model=None,
    responses=_RESPONSES,
)
def handover_report(
    handover_id: HandoverId, request: Request, session: DbSession, principal: HandoversRead, now: Now
) -> Response:
    media = negotiate(request.headers.get("accept"))
    if media is None:
        raise NotAcceptable(
            "This report is available as application/json, text/csv or text/html.", extra={"allowed": list(OFFERS)}
        )
    v = service.see_handover(session, principal, handover_id)
    h = v.handover
    report = build_report(session, h, now=now, only=v.items() if v.own else None, view=v.scope)
    headers = {"Vary": "Accept", "Cache-Control": "private, no-store"}
    if media == CSV:
        headers["Content-Disposition"] = f'attachment; filename="handover-{h.id}.csv"'
        # The BOM lets spreadsheet programs read UTF-8 (Chinese names) correctly.
        body = ("\ufeff" + to_csv(report)).encode("utf-8")
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    if media == HTML:
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return HTMLResponse(to_html(report), headers=headers)
    return JSONResponse(report, headers=headers)
