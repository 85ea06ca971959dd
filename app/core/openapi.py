"""The contract's finish: what makes clients generated from openapi.json read naturally.

`finish(schema, ...)` runs after FastAPI built the document (and after `app.main`'s problem+json polish):

- the outbound events as the OpenAPI 3.1 `webhooks` section (built by `app.notify.events`, handed in);
- one named enum per concept: every inline `enum` becomes a `$ref` to `components/schemas/<Name>` (`HandoverStatus`,
  `ItemStatus`, `ExitReason`, `RiskBand`, `GrantLevel`, …), so a generator makes one enum class, not one per
  property or parameter (`…Type0`);
- inline objects that would get a derived name (a nullable free-form object, the HR hook's event variants) become
  named components; `Page_X_` becomes `PageX`;
- response headers the server sends (ETag, Location, Retry-After) documented on the responses that carry them;
- `servers`, and `security: []` on the public operations (probes, the signed HR hook, the acknowledgment page).

Nothing here changes an operation, its id, path or status codes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

REF = "#/components/schemas/"

# One name per concept, by its set of values. An enum missing here is named after its first owner and property
# (`<Schema><Property>`); add it here to give it a better one.
ENUM_NAMES: dict[frozenset[str], str] = {
    frozenset(v): name
    for name, v in {
        "AccessAction": ("view", "edit", "export", "delete"),
        "AccessEventAction": ("view", "edit", "export", "download", "delete"),
        "GrantLevel": ("owner", "interim", "shadow", "read"),
        "AccessReason": (
            "granted",
            "unknown_employee",
            "unknown_client",
            "employee_departed",
            "no_grant",
            "insufficient_clearance",
            "view_only",
            "owner_required",
            "employee_away",
            "not_record_owner",
        ),
        "AlertStatus": ("open", "resolved"),
        "CandidatePoolKind": ("team", "department", "organisation", "list"),
        "ClientTier": ("strategic", "key", "standard", "prospect"),
        "ClientStatus": ("active", "at_risk", "churned", "inactive"),
        "RecordKind": ("deal", "task", "case", "meeting", "contract", "invoice", "project", "automation", "other"),
        "RecordStatus": ("open", "closed"),
        "Channel": ("email", "webhook", "phone", "none"),
        "MessageStatus": ("pending", "sent", "failed", "dead", "acknowledged", "withdrawn", "skipped"),
        "EmployeeStatus": ("active", "leaving", "departed"),
        "ExitReason": ("resignation", "termination", "retirement", "role_change", "leave", "other"),
        "HandoverReason": ("resignation", "termination", "retirement", "role_change", "leave", "other", "unknown"),
        "FollowUpOutcome": ("retained", "at_risk", "churned"),
        "FollowUpKind": ("first_contact", "check_in", "satisfaction_survey"),
        "FollowUpStatus": ("open", "completed", "cancelled"),
        "HandoverStatus": ("draft", "planned", "approved", "executed", "scheduled", "completed", "cancelled", "undone"),
        "HandoverSource": ("api", "hr_webhook"),
        "ReportView": ("all", "own"),
        "ItemStatus": ("proposed", "approved", "transferred", "confirmed", "closed", "cancelled", "reverted"),
        "JobKind": ("handover-plans", "simulations"),
        "JobState": ("queued", "running", "succeeded", "failed"),
        "MessageCategory": ("event", "notification"),
        "NotificationKind": ("client", "internal"),
        "TemplateKey": (
            "client_intro",
            "successor_briefing",
            "manager_summary",
            "signoff_reminder",
            "follow_up_due",
            "approval_reminder",
        ),
        "RetentionGroupBy": ("team", "successor", "tier", "risk_band"),
        "RiskModelStatus": ("draft", "active", "retired"),
        "RiskModelSource": ("manual", "fit"),
        "RiskBand": ("low", "medium", "high", "critical"),
        "RuleOperator": ("==", "!=", ">=", ">", "<=", "<"),
        "SignOffSide": ("outgoing", "incoming"),
        "EndpointStatus": ("active", "disabled", "deleted"),
        "ReportFormat": ("json", "csv", "html"),
        "ReportLocale": ("en", "zh-CN"),
        "RetentionFormat": ("json", "csv"),
    }.items()
}
# Nullable free-form objects, by owner and property: one name each (identical ones share it).
OBJECT_NAMES: dict[tuple[str, str], str] = {
    ("JobOut", "result"): "JobResult",
    ("RiskModelOut", "metrics"): "RiskModelMetrics",
    ("RiskModelSummary", "metrics"): "RiskModelMetrics",
}
# Response headers the server sends, by the 2xx body they come with or by status.
ETAG_BODIES = ("HandoverOut", "ItemOut")
ETAG = {
    "description": "The resource's version (a strong ETag): send it back as If-Match to update it.",
    "schema": {"type": "string"},
}
LOCATION = {"description": "The created resource's path.", "schema": {"type": "string"}}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
CREATED_AT: dict[str, str] = {
    "handovers-create": "/v1/handovers/{id}",
    "webhook-endpoints-create": "/v1/webhook-endpoints/{id}",
    "access-grants-create": "/v1/access/grants/{id}",
}
TAGS: dict[str, str] = {
    "access": "Access decisions for the CRM, access grants and anomaly alerts.",
    "ops": "Liveness and readiness probes.",
    "directory": "Employees and clients as the CRM and HR know them.",
    "records": "The records the CRM holds beside its clients (deals, tasks, cases, …): the owner's book of business.",
    "audit": "The tamper-evident audit chain and its signed checkpoints.",
    "handovers": "The handover workflow: open, plan, approve, execute, undo; items, reports and simulations.",
    "hr-events": "The HR system's signed webhook (exits, cancelled exits, employee updates).",
    "notifications": "Notifications, their templates and webhook endpoints with their deliveries.",
    "risk": "Client risk scoring and its models.",
    "follow-ups": "Follow-ups after a handover and the retention report.",
    "jobs": "Long-running requests answered later (`Prefer: respond-async`).",
    "webhooks": "Events this service POSTs to subscribed endpoints (Standard Webhooks signatures).",
}
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


def finish(
    schema: dict[str, Any],
    *,
    webhooks: Mapping[str, Any] | None = None,
    webhook_schemas: Mapping[str, Any] | None = None,
    enum_names: Mapping[frozenset[str], str] | None = None,
    servers: list[dict[str, str]] | None = None,
) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, value in (webhook_schemas or {}).items():
        if name in components and components[name] != value:
            raise ValueError(f"webhook schema {name} collides with an API schema")
        components[name] = value
    if webhooks:
        schema["webhooks"] = dict(webhooks)
    _rename_pages(schema)
    _hoist_request_variants(schema)
    _hoist_nullable_objects(components)
    _name_enums(schema, {**ENUM_NAMES, **(enum_names or {})})
    _document_headers(schema)
    _instance_in_examples(schema)
    if servers:
        schema["servers"] = servers
    for _, _, op in operations(schema):
        op.setdefault("security", [])  # no bearer token: a probe, a signed hook, a link in an email
    _declare_tags(schema)
    schema["components"]["schemas"] = dict(sorted(components.items()))


def operations(schema: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method in METHODS and isinstance(op, dict):
                yield path, method, op


def _declare_tags(schema: dict[str, Any]) -> None:
    """Every tag an operation or webhook uses, declared once at the top (in order of first use)."""
    used: list[str] = []
    items = [*schema.get("paths", {}).values(), *schema.get("webhooks", {}).values()]
    for item in items:
        for op in item.values():
            used.extend(t for t in op.get("tags", []) if t not in used)
    declared = {t["name"] for t in schema.get("tags", [])}
    extra = [{"name": t, "description": TAGS.get(t, t)} for t in used if t not in declared]
    if extra:
        schema["tags"] = [*schema.get("tags", []), *extra]


# ---- names ------------------------------------------------------------------------------------


def _pascal(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", text) if w)


def _replace_refs(node: Any, renames: Mapping[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF) :] in renames:
            node["$ref"] = REF + renames[ref[len(REF) :]]
        for value in node.values():
            _replace_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _replace_refs(value, renames)


def _rename_pages(schema: dict[str, Any]) -> None:
    """`Page_HandoverOut_` (pydantic's generic name) -> `PageHandoverOut`, the name generators already give it."""
    components = schema["components"]["schemas"]
    renames = {n: "Page" + n[len("Page_") : -1] for n in components if n.startswith("Page_") and n.endswith("_")}
    for old, new in renames.items():
        components[new] = components.pop(old)
        components[new]["title"] = new
    _replace_refs(schema, renames)


def _hoist(components: dict[str, Any], name: str, value: dict[str, Any]) -> dict[str, Any]:
    """`value` as the component `name` (shared when identical); returns the $ref to put in its place."""
    existing = components.get(name)
    if existing is not None and existing != value:
        raise ValueError(f"two different schemas want the name {name}")
    components[name] = value
    return {"$ref": REF + name}


def _hoist_request_variants(schema: dict[str, Any]) -> None:
    """Inline request bodies (documented through `openapi_extra`, e.g. the HR hook's `oneOf` of events): each titled
    object becomes a component of its title, nested titled objects too."""
    components = schema["components"]["schemas"]

    def hoist(node: Any, top: bool) -> Any:
        if isinstance(node, list):
            return [hoist(v, False) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: hoist(v, False) for k, v in node.items()}
        title = out.get("title")
        if not top and out.get("type") == "object" and "properties" in out and isinstance(title, str):
            name = _pascal(title)
            out["title"] = name
            return _hoist(components, name, out)
        return out

    for _, _, op in operations(schema):
        for media in op.get("requestBody", {}).get("content", {}).values():
            if "schema" in media and "$ref" not in media["schema"]:
                media["schema"] = hoist(media["schema"], True)


def _hoist_nullable_objects(components: dict[str, Any]) -> None:
    """`X | None` of a free-form object: generators name the object `<Owner><Property>Type0`; named instead."""
    for owner, value in list(components.items()):
        for prop, sub in value.get("properties", {}).items():
            alternatives = sub.get("anyOf", [])
            for i, alt in enumerate(alternatives):
                if alt.get("type") == "object" and "$ref" not in alt:
                    name = OBJECT_NAMES.get((owner, prop), f"{owner}{_pascal(prop)}")
                    alternatives[i] = _hoist(components, name, {**alt, "title": name})


def _name_enums(schema: dict[str, Any], names: Mapping[frozenset[str], str]) -> None:
    """Every inline string enum becomes a `$ref` to one component per set of values."""
    components = schema["components"]["schemas"]
    found: dict[frozenset[str], str] = {}

    def name_for(values: list[Any], owner: str, prop: str) -> str:
        key = frozenset(values)
        if key not in found:
            found[key] = names.get(key) or _pascal(owner) + _pascal(prop)
            components.setdefault(found[key], {"type": "string", "enum": list(values), "title": found[key]})
        return found[key]

    def walk(node: Any, owner: str, prop: str) -> Any:
        if isinstance(node, list):
            return [walk(v, owner, prop) for v in node]
        if not isinstance(node, dict):
            return node
        values = node.get("enum")
        if isinstance(values, list) and all(isinstance(v, str) for v in values) and node.get("type") == "string":
            name = name_for(values, owner, prop)
            kept = {k: v for k, v in node.items() if k in ("description", "default", "examples")}
            return {"$ref": REF + name, **kept}
        out = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out[key] = {p: walk(v, owner, p) for p, v in value.items()}
            else:
                out[key] = walk(value, owner, prop)
        return out

    for name in sorted(components):
        value = components[name]
        if isinstance(value.get("enum"), list):  # an enum component already (a Python Enum)
            found.setdefault(frozenset(value["enum"]), name)
    for name in sorted(components):
        value = components[name]
        if not isinstance(value.get("enum"), list):
            components[name] = walk(value, name, "")
    for _, _, op in operations(schema):
        for param in op.get("parameters", []):
            param["schema"] = walk(param["schema"], op.get("operationId", ""), param["name"])
        for media in op.get("requestBody", {}).get("content", {}).values():
            if "schema" in media:
                media["schema"] = walk(media["schema"], op.get("operationId", ""), "body")
    for event, item in schema.get("webhooks", {}).items():
        for op in item.values():
            for media in op.get("requestBody", {}).get("content", {}).values():
                media["schema"] = walk(media["schema"], event, "body")


# ---- headers ----------------------------------------------------------------------------------


def _instance_in_examples(schema: dict[str, Any]) -> None:
    """A problem example names its `instance` (required by the Problem schema): the operation's path."""
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            for response in op.get("responses", {}).values():
                examples = response.get("content", {}).get("application/problem+json", {}).get("examples", {})
                for example in examples.values():
                    value = example.get("value")
                    if isinstance(value, dict) and "instance" not in value:
                        value["instance"] = path


def _body_ref(response: Mapping[str, Any]) -> str | None:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    return ref[len(REF) :] if isinstance(ref, str) and ref.startswith(REF) else None


def _document_headers(schema: dict[str, Any]) -> None:
    for _, _, op in operations(schema):
        for code, response in op.get("responses", {}).items():
            headers = response.setdefault("headers", {})
            if code.startswith("2") and _body_ref(response) in ETAG_BODIES:
                headers.setdefault("ETag", copy.deepcopy(ETAG))
            if code == "201" and op.get("operationId") in CREATED_AT:
                location = copy.deepcopy(LOCATION)
                location["description"] = f"The created resource: {CREATED_AT[op['operationId']]}."
                headers.setdefault("Location", location)
            if code == "503":
                headers.setdefault("Retry-After", copy.deepcopy(RETRY_AFTER))
            if not headers:
                del response["headers"]
