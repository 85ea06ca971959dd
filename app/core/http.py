"""HTTP conventions shared by every router: content negotiation, ETags and If-Match."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.errors import PreconditionFailed, PreconditionRequired

JSON, CSV, HTML = "application/json", "text/csv", "text/html"


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


def negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the client prefers (RFC 9110 §12.5.1), or None when none is acceptable.

    Each offer takes the q of the most specific range matching it; the highest q wins, then the more specific
    match (`text/csv, */*` is a request for CSV), then the order of `offers` (the first is the default)."""
    if accept is None or not accept.strip():
        return offers[0]
    ranges = _ranges(accept)
    best, best_key = None, (0.0, -1)
    for offer in offers:
        kind = offer.split("/")[0]
        level, q = -1, 0.0
        for media, mq in ranges:
            rank = 2 if media == offer else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
            if rank > level:
                level, q = rank, mq
        if q > 0 and (q, level) > best_key:
            best, best_key = offer, (q, level)
    return best


FORMATS = {"json": JSON, "csv": CSV, "html": HTML}
"""A report's `format` query parameter: the media type it stands for (it wins over Accept)."""


def choose(fmt: str | None, accept: str | None, offers: Sequence[str]) -> str | None:
    """The media type of a report: the `format` parameter when given (one of the offers), else by Accept."""
    if fmt is not None:
        media = FORMATS.get(fmt)
        return media if media in offers else None
    return negotiate(accept, offers)


def etag(version: int, kind: str, ident: int) -> str:
    """A strong ETag for a versioned row: the kind and id make tags of different resources unequal."""
    return f'"{kind}-{ident}-v{version}"'


def check_if_match(if_match: str | None, current: str) -> None:
    """428 without If-Match, 412 when it names none of the current tag, its weak form or `*`."""
    if if_match is None:
        raise PreconditionRequired("This update needs an If-Match header with the current ETag.")
    tags = [t.strip() for t in if_match.split(",")]
    if "*" not in tags and current not in tags and f"W/{current}" not in tags:
        raise PreconditionFailed("The resource changed since you read it; fetch it again.", extra={"etag": current})


RESPOND_ASYNC = "respond-async"


def prefers_async(prefer: str | None) -> bool:
    """Whether a Prefer header (RFC 7240; several headers joined with commas) asks for `respond-async`.

    The preference takes no value: `respond-async=yes`, misspellings and anything unparsable are not it, and an
    unknown or malformed preference is ignored as the RFC says (the request is answered synchronously)."""
    if not prefer:
        return False
    for part in prefer.split(","):
        token = part.split(";", 1)[0].strip()
        name, eq, value = token.partition("=")
        if name.strip().lower() == RESPOND_ASYNC and (not eq or value.strip() in ("", '""')):
            return True
    return False
