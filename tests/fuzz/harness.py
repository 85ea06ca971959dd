"""What the schemathesis tests share: the schema, the app they reach, tokens per role, and per-operation exclusions.

The schema is loaded at import (`@schema.parametrize()` needs it at collection) from an app built with default
settings; `tests/test_contract.py` keeps it equal to the committed `openapi/openapi.json`. Requests go in-process
to whichever app the running test points `TARGET` at, so the fixtures decide the database.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance, use_after_free

from app.core.auth import ROLE_SCOPES, SCOPES, mint_token
from app.core.config import Settings
from app.core.idempotency import KEY_RE
from app.main import create_app

SEED = 20261102


def config(*, max_examples: int, coverage: bool, inference: bool = True, stateful_mode: str = "all") -> dict[str, Any]:
    return {
        "seed": SEED,
        "generation": {
            "max-examples": max_examples,
            "deterministic": True,  # derandomised: the same cases on every run
            "database": "none",  # no example database: nothing carried between runs
            # Tokens are supplied per role by the tests; generated Authorization headers would only be noise.
            "with-security-parameters": False,
        },
        # The coverage phase (boundaries, every missing or wrong-typed parameter, unexpected methods) is what
        # costs; it runs once, with the admin token. The other roles get examples and random fuzzing.
        "phases": {
            "coverage": {"enabled": coverage},
            # Links are inferred by field name (any *_id), which mostly yields ids of other things; the linked
            # schema declares its own (with_links) and skips inference.
            "stateful": {
                "inference": {"algorithms": ["location-headers", "dependency-analysis"] if inference else []},
                # Invalid inputs are the stateless run's; the chains need valid steps to get anywhere.
                "generation": {"mode": stateful_mode},
            },
        },
    }


class Target:
    """The ASGI app schemathesis sends to; the lifespan stays with the fixtures, not with schemathesis."""

    app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None, "no app to fuzz: use the fuzz_target fixture"
        await self.app(scope, receive, send)


TARGET = Target()
RAW_SCHEMA = create_app(Settings()).openapi()


def load_schema(raw: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    loaded = schemathesis.openapi.from_dict(raw or RAW_SCHEMA, config=schemathesis.Config.from_dict(config(**kwargs)))
    loaded.app = TARGET
    return loaded


full_schema = load_schema(max_examples=20, coverage=True)
light_schema = load_schema(max_examples=5, coverage=False)


def _page_item(op: dict[str, Any]) -> dict[str, Any] | None:
    """The item schema of a paginated list response, if the operation returns one."""
    ref = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
    name = ref.get("$ref", "").rsplit("/", 1)[-1]
    page = RAW_SCHEMA["components"]["schemas"].get(name, {})
    item_ref = page.get("properties", {}).get("items", {}).get("items", {}).get("$ref", "")
    return RAW_SCHEMA["components"]["schemas"].get(item_ref.rsplit("/", 1)[-1]) if item_ref else None


def with_links(raw: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links from every list to the operations on its items (`GET /v1/handovers` → `…/{handover_id}/…`
    with `items/0/id`), from each item's GET to the writes that need its ETag, and from creations to the created.

    Schemathesis infers links by name, but not out of a page's `items`: without these the stateful phase would
    only ever reach ids it made up. Test-only: the served contract does not carry links."""
    out = copy.deepcopy(raw)
    paths = out["paths"]
    for list_path, list_item in raw["paths"].items():
        list_op = list_item.get("get")
        item_schema = _page_item(list_op) if list_op else None
        if item_schema is None:
            continue
        own = re.findall(r"\{([^}]+)\}", list_path)
        for path, path_item in raw["paths"].items():
            match = re.fullmatch(re.escape(list_path) + r"/\{([^}]+)\}(/.*)?", path)
            if not match:
                continue
            param = match.group(1)
            field = param if param in item_schema.get("properties", {}) else "id"
            parameters = {name: f"$request.path.{name}" for name in own}
            links = paths[list_path]["get"]["responses"]["200"].setdefault("links", {})
            for index in (0, 1):  # the newest two: with the seed, the open handover and the approved one
                for method in path_item:
                    operation_id = path_item[method]["operationId"]
                    links[f"{operation_id}-from-list-{index}"] = {
                        "operationId": operation_id,
                        "parameters": {**parameters, param: f"$response.body#/items/{index}/{field}"},
                    }
    etag_writes = {
        "/v1/handovers/{handover_id}": [
            ("post", "/v1/handovers/{handover_id}/approve"),
            ("patch", "/v1/handovers/{handover_id}"),
        ],
        "/v1/handovers/{handover_id}/items/{item_id}": [("patch", "/v1/handovers/{handover_id}/items/{item_id}")],
    }
    for get_path, writes in etag_writes.items():
        names = re.findall(r"\{([^}]+)\}", get_path)
        links = paths[get_path]["get"]["responses"]["200"].setdefault("links", {})
        for method, path in writes:
            operation_id = raw["paths"][path][method]["operationId"]
            parameters = {name: f"$request.path.{name}" for name in names}
            parameters["header.If-Match"] = "$response.header.ETag"
            links[f"{operation_id}-with-etag"] = {"operationId": operation_id, "parameters": parameters}
    created = paths["/v1/handovers"]["post"]["responses"]["201"].setdefault("links", {})
    for path, path_item in raw["paths"].items():
        if path.startswith("/v1/handovers/{handover_id}") and path.count("{") == 1:
            for method in path_item:
                operation_id = path_item[method]["operationId"]
                created[f"{operation_id}-created"] = {
                    "operationId": operation_id,
                    "parameters": {"handover_id": "$response.body#/id"},
                }
    return out


# Roles, each with the employee its token names; the integration token carries every scope.
ROLES: dict[str, dict[str, str | None]] = {
    "admin": {"emp": None, "scope": None},
    "hr": {"emp": None, "scope": None},
    "manager": {"emp": "m1", "scope": None},
    "account_manager": {"emp": "e1", "scope": None},
    "auditor": {"emp": None, "scope": None},
    "integration": {"emp": None, "scope": " ".join(SCOPES)},
}
assert set(ROLES) == set(ROLE_SCOPES)


def token(settings: Settings, role: str) -> str:
    spec = ROLES[role]
    return mint_token(settings, role=role, sub=f"fuzz-{role}", emp=spec["emp"], scope=spec["scope"])


def role_scopes(role: str) -> frozenset[str]:
    return frozenset(SCOPES) if role == "integration" else ROLE_SCOPES[role]


def required_scopes(method: str, path: str) -> list[str]:
    op = RAW_SCHEMA["paths"][path][method.lower()]
    security = op.get("security") or []
    return list(security[0].get("bearerAuth", [])) if security else []


def reachable(role: str, method: str, path: str) -> bool:
    """Whether the role's token has the operation's scopes; the rest answer 403 (the role matrix checks that)."""
    return set(required_scopes(method, path)) <= role_scopes(role)


# Checks that cannot hold for an operation, each with the reason. Nothing else is excluded anywhere.
# positive_data_acceptance expects 2xx/401/403/404/409 for every schema-valid request; these operations refuse some
# schema-valid requests with 412 or 422 for reasons JSON Schema cannot express.
_REFERENCES = (
    "bodies name other records by external id (owner, manager, leaver, employee, client); generated ids do not "
    "exist, and an unknown reference in a body is a 422 unknown_reference (404 is for the path's own resource)"
)
_IF_MATCH = "If-Match must carry the current ETag; a generated one is stale (412). The stateful test sends real ones"
_RECORD_RULES = (
    "an amount needs a currency (a cross-field rule); attributes are bounded in bytes and depth, which JSON Schema "
    "cannot state"
)
EXCLUDED: dict[tuple[str, str], dict[Any, str]] = {
    ("PUT", "/v1/employees/{external_id}"): {
        positive_data_acceptance: _REFERENCES + "; a manager is not oneself nor one of one's reports (no cycles)"
    },
    ("POST", "/v1/employees/batch"): {positive_data_acceptance: _REFERENCES + "; no cycles among managers"},
    ("PUT", "/v1/clients/{external_id}"): {positive_data_acceptance: _REFERENCES},
    ("POST", "/v1/clients/batch"): {positive_data_acceptance: _REFERENCES},
    ("PUT", "/v1/records/{kind}/{external_id}"): {positive_data_acceptance: _REFERENCES + "; " + _RECORD_RULES},
    ("POST", "/v1/records/batch"): {
        positive_data_acceptance: _REFERENCES + "; " + _RECORD_RULES + "; a (kind, external_id) pair at most once"
    },
    ("POST", "/v1/handovers"): {
        positive_data_acceptance: _REFERENCES + "; one open handover per leaver; a leave needs return_at after "
        "effective_at, and return_at and delegate are for a leave only (cross-field rules); a leave needs a delegate "
        "who can act (named, or the interim owner rule)"
    },
    ("POST", "/v1/handovers/{handover_id}/plan"): {
        positive_data_acceptance: _REFERENCES + "; candidate_pool kind=list needs employees (a cross-field rule)"
    },
    ("POST", "/v1/handover-plans"): {
        positive_data_acceptance: "generated handover ids do not exist (404) or are not plannable now (409); "
        "candidate_pool kind=list needs employees (a cross-field rule)"
    },
    ("POST", "/v1/handover-approvals"): {
        positive_data_acceptance: "generated handover ids do not exist (404) or are not planned now (409)"
    },
    ("PATCH", "/v1/handovers/{handover_id}/items/{item_id}"): {
        positive_data_acceptance: _IF_MATCH + "; " + _REFERENCES + "; force needs a reason (a cross-field rule)"
    },
    ("POST", "/v1/handovers/{handover_id}/approve"): {positive_data_acceptance: _IF_MATCH},
    ("PATCH", "/v1/handovers/{handover_id}"): {positive_data_acceptance: _IF_MATCH},
    ("PATCH", "/v1/handovers/{handover_id}/records/{kind}/{external_id}"): {
        positive_data_acceptance: _IF_MATCH + "; " + _REFERENCES + "; the receiver must be able to hold the record "
        "(active, not leaving, not the leaver)"
    },
    ("POST", "/v1/simulations"): {positive_data_acceptance: _REFERENCES},
    ("POST", "/v1/access/grants"): {
        positive_data_acceptance: _REFERENCES + "; valid_until must be after valid_from (a cross-field rule)"
    },
    ("POST", "/v1/access/events"): {positive_data_acceptance: _REFERENCES},
    ("POST", "/v1/risk/score"): {positive_data_acceptance: _REFERENCES},
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/replay"): {
        positive_data_acceptance: "`to` must be after `from`, at most 31 days later (a cross-field rule)"
    },
    ("POST", "/v1/webhook-endpoints"): {
        positive_data_acceptance: "the URL's host must resolve to a public address (the SSRF guard asks DNS)"
    },
    ("PUT", "/v1/notification-templates/{key}/{locale}"): {
        positive_data_acceptance: "the template must render (Jinja), and the rendered subject fit 300 characters"
    },
    ("PUT", "/v1/risk/model"): {
        positive_data_acceptance: "a model is valid only whole: a weight for every feature (GET /v1/risk/model "
        "lists them), sign constraints, and thresholds in order (critical > high > medium)"
    },
    ("PUT", "/v1/handovers/{handover_id}/items/{item_id}/checklist/{key}"): {
        positive_data_acceptance: "an evidence entry has exactly one of url or record, and a url needs a host (it "
        "is an http/https link, not only a scheme): cross-field and parsing rules beyond the pattern"
    },
    ("PUT", "/v1/checklist-templates/{tier}"): {
        positive_data_acceptance: "each checklist key at most once in a template (a cross-field rule)"
    },
    ("GET", "/v1/reports/retention"): {positive_data_acceptance: "from must be before to (a cross-field rule)"},
    ("GET", "/v1/access/grants/{grant_id}"): {
        use_after_free: "DELETE revokes a grant; the grant stays readable, with revoked_at and revoked_by, as the "
        "record of who had access when (documented on DELETE)"
    },
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): {
        use_after_free: "DELETE marks the endpoint deleted; it stays readable (status deleted, see WebhookEndpointOut) "
        "with its delivery history"
    },
    ("POST", "/v1/follow-ups/{follow_up_id}/complete"): {
        positive_data_acceptance: "what a completion needs depends on the stored follow-up: a first_contact one "
        "needs first_contact_at"
    },
}


def excluded_checks(method: str, path: str) -> list[Any]:
    return list(EXCLUDED.get((method.upper(), path), {}))


_keys = itertools.count(1)


def unique_idempotency_key(case: Any) -> None:
    """Generated keys repeat across examples with other bodies, which the contract answers 422 by design
    (tests/core/test_idempotency.py): give every well-formed key a fresh value so each case stands alone.
    Malformed keys are left as generated, so their 422 is still fuzzed."""
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and KEY_RE.match(headers[name]):
            headers[name] = f"fuzz-{next(_keys)}"


linked_schema = load_schema(
    with_links(RAW_SCHEMA), max_examples=25, coverage=False, inference=False, stateful_mode="positive"
)
