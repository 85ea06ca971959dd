"""RFC 9457 problems as the API answers them."""

from __future__ import annotations

from typing import Any

from httpx import Response

PROBLEM = "application/problem+json"


def assert_problem(
    response: Response, status: int, *, loc: list[str | int] | None = None, type: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem with the documented members; for 422 field errors, one starting with loc; with `type`,
    that problem type (the part after `urn:handover:problem:`)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    for member in ("type", "title", "status", "detail", "instance"):
        assert member in body, (member, body)
    assert body["type"].startswith("urn:handover:problem:")
    if type is not None:
        assert body["type"] == f"urn:handover:problem:{type}", body
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"].startswith("/v1/")
    if status == 422:
        assert isinstance(body.get("errors"), list) and body["errors"], body
        for err in body["errors"]:
            assert isinstance(err["loc"], list) and err["loc"], err
            assert isinstance(err["msg"], str)
            assert isinstance(err["type"], str)
        if loc is not None:
            assert any(err["loc"][: len(loc)] == loc for err in body["errors"]), (loc, body["errors"])
    return body
