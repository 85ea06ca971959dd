"""Problem types: every refusal outside app/core raises a domain error with its own type, the types are unique and
titled, the README lists exactly them, and the API answers them.

`python -m tests.core.test_problem_types --write` regenerates the README table between its markers.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

import app
from app.core.errors import TYPE_PREFIX, DomainError, domain_error_classes, problem_types
from app.ops.errors import DocsAssetNotFound
from tests.support.company import EFFECTIVE, plan
from tests.support.problems import assert_problem

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
CORE = APP / "core"
README = ROOT / "README.md"
BEGIN, END = "<!-- problem-types:begin -->", "<!-- problem-types:end -->"

# The generic classes (one per status): app/core may raise them for cross-cutting refusals, nothing else may.
GENERIC = {"DomainError", *(c.__name__ for c in DomainError.__subclasses__() if c.__module__ == "app.core.errors")}
GENERIC.discard("RoleNotAllowed")


def _import_all() -> None:
    for info in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(info.name)


def _bare_generic_raises(source: str, where: str) -> list[str]:
    """`raise Conflict(...)`, `raise errors.NotFound(...)`, `raise Forbidden` and the like."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
        if name in GENERIC:
            hits.append(f"{where}:{node.lineno}: raise {name}")
    return hits


def test_no_bare_generic_raise_outside_core() -> None:
    hits = []
    for path in sorted(APP.rglob("*.py")):
        if CORE in path.parents:
            continue
        hits += _bare_generic_raises(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert hits == [], "raise a domain error of the module's errors.py instead:\n" + "\n".join(hits)


def test_the_raise_check_catches_what_it_claims() -> None:
    src = (
        "def f():\n    raise Conflict('x')\n"
        "def g():\n    raise errors.NotFound('y')\n"
        "def h():\n    raise Unprocessable\n"
        "def k():\n    raise HandoverNotPlanned('z')\n"
        "def m():\n    raise\n"
    )
    found = _bare_generic_raises(src, "x.py")
    assert found == ["x.py:2: raise Conflict", "x.py:4: raise NotFound", "x.py:6: raise Unprocessable"]
    assert {"Conflict", "NotFound", "Unprocessable", "Forbidden", "PreconditionFailed", "PreconditionRequired"} <= (
        GENERIC
    )


def test_slugs_are_unique_and_titled() -> None:
    _import_all()
    classes = domain_error_classes()
    seen: dict[str, str] = {}
    for cls in classes:
        name = f"{cls.__module__}.{cls.__qualname__}"
        assert cls.slug not in seen, f"{name} reuses the slug {cls.slug!r} of {seen[cls.slug]}"
        seen[cls.slug] = name
        assert "slug" in cls.__dict__ and "title" in cls.__dict__, f"{name} must declare its own slug and title"
        assert (cls.__doc__ or "").strip() and "__doc__" in cls.__dict__, f"{name} needs a docstring: when it is raised"
        assert cls.slug == cls.slug.lower() and " " not in cls.slug, name
        for base in cls.__mro__[1:]:
            if issubclass(base, DomainError) and base is not DomainError:
                assert cls.title != base.title, f"{name} keeps the title of {base.__name__}"
    assert len(classes) > 60  # the domain errors of every module were imported


def render_table() -> str:
    _import_all()
    rows = ["| type | status | title | when |", "|---|---|---|---|"]
    for p in problem_types():
        when = p.when.replace("|", "\\|")
        rows.append(f"| `{p.type}` | {p.status} | {p.title} | {when} |")
    return "\n".join(rows)


def _readme_table(text: str) -> str:
    assert BEGIN in text and END in text, f"README.md needs the markers {BEGIN} and {END}"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_readme_lists_exactly_the_registered_types() -> None:
    listed = _readme_table(README.read_text(encoding="utf-8"))
    stale = "README problem types are stale: run `python -m tests.core.test_problem_types --write`"
    assert listed == render_table(), stale
    types = {line.split("`")[1] for line in listed.splitlines()[2:]}
    assert types == {p.type for p in problem_types()}


def test_every_listed_type_is_named_in_the_openapi(app: Any) -> None:
    """The OpenAPI lists each operation's domain errors: every registered module type appears in some response."""
    schema = app.openapi()
    named = {
        ex["value"]["type"]
        for item in schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for response in op.get("responses", {}).values()
        for ex in response.get("content", {}).get("application/problem+json", {}).get("examples", {}).values()
    }
    module_types = {TYPE_PREFIX + c.slug for c in domain_error_classes() if c.__module__ != "app.core.errors"}
    # The docs pages' asset route lives outside the API's schema (include_in_schema=False).
    outside = {TYPE_PREFIX + DocsAssetNotFound.slug}
    assert sorted(module_types - named - outside) == []


# ---- the API answers them --------------------------------------------------------------------


def test_approving_an_unplanned_handover_is_handover_not_planned(
    client: TestClient, auth: Any, open_handover: int
) -> None:
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    body = assert_problem(r, 409, type="handover-not-planned")
    assert body["title"] == "The handover is not planned"
    assert body["allowed"] == ["planned", "cancelled"]  # unchanged: the transitions a draft allows


def test_unknown_handover_is_handover_not_found(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    assert_problem(client.get("/v1/handovers/999999", headers=auth()), 404, type="handover-not-found")


def test_second_open_handover_is_handover_already_open(client: TestClient, auth: Any, open_handover: int) -> None:
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    body = assert_problem(r, 409, type="handover-already-open")
    assert body["handover_id"] == open_handover


def test_unknown_employee_and_client_are_typed(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    assert_problem(client.get("/v1/employees/nobody", headers=auth()), 404, type="employee-not-found")
    assert_problem(client.get("/v1/clients/nobody", headers=auth()), 404, type="client-not-found")


def test_batch_approval_of_an_unplanned_handover_names_it(client: TestClient, auth: Any, open_handover: int) -> None:
    r = client.post("/v1/handover-approvals", json={"handover_ids": [open_handover]}, headers=auth())
    assert_problem(r, 409, type="handover-not-planned")


def test_successor_over_constraints_keeps_its_field_errors(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    item = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"][0]
    url = f"/v1/handovers/{open_handover}/items/{item['id']}"
    tag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(url, json={"successor": "e0"}, headers={**auth("hr"), "If-Match": tag})  # the leaver
    body = assert_problem(r, 422, loc=["body", "successor"], type="successor-breaks-constraints")
    assert all(e["type"] == "constraint" for e in body["errors"]), body
    r = client.patch(url, json={"successor": "nobody"}, headers={**auth("hr"), "If-Match": tag})
    assert_problem(r, 422, loc=["body", "successor"], type="unknown-employee")
    r = client.patch(url, json={"successor": "e1"}, headers={**auth("hr"), "If-Match": '"stale"'})
    assert_problem(r, 412, type="precondition-failed")  # infrastructure refusals stay generic


def test_unknown_job_is_job_not_found(client: TestClient, auth: Any) -> None:
    assert_problem(client.get("/v1/jobs/999999", headers=auth()), 404, type="job-not-found")


def test_unknown_path_stays_generic(client: TestClient, auth: Any) -> None:
    assert_problem(client.get("/v1/nothing-here", headers=auth()), 404, type="not-found")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.core.test_problem_types --write")
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{BEGIN}\n{render_table()}\n{END}{tail}", encoding="utf-8")
    print("README.md problem types table written")
