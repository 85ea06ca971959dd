"""Completing an item's required checklist entries before it is signed off (sign-off waits for them)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def open_required(client: TestClient, headers: dict[str, str], hid: int, item_id: int) -> list[str]:
    """The item's required entries not done, as the service counts them: its tier's template, then mitigations."""
    item = client.get(f"/v1/handovers/{hid}/items/{item_id}", headers=headers).json()
    r = client.get(f"/v1/checklist-templates/{item['tier']}", headers=headers)
    assert r.status_code == 200, r.text
    keys = [e["key"] for e in r.json()["entries"] if e["required"]]
    keys += [k for k in item["checklist"] if k.startswith("mitigation:")]
    return [k for k in keys if not (item["checklist"].get(k) or {}).get("done")]


def complete_checklist(
    client: TestClient, headers: dict[str, str], hid: int, item_id: int, note: str = "done"
) -> list[str]:
    """Marks every open required entry done (as `headers`, who must be involved); returns the keys it marked."""
    keys = open_required(client, headers, hid, item_id)
    for key in keys:
        r = client.put(
            f"/v1/handovers/{hid}/items/{item_id}/checklist/{key}", json={"done": True, "note": note}, headers=headers
        )
        assert r.status_code == 200, r.text
    return keys


def optional_templates(client: TestClient, headers: dict[str, str], required: tuple[str, ...] = ()) -> None:
    """Every tier's template with the six keys, only `required` of them required (mitigations stay required)."""
    keys = ("client_profile", "contacts", "open_projects", "contracts_financials", "open_issues", "handover_meeting")
    for tier in ("strategic", "key", "standard", "prospect"):
        body: dict[str, Any] = {"entries": [{"key": k, "label": k, "required": k in required} for k in keys]}
        r = client.put(f"/v1/checklist-templates/{tier}", json=body, headers=headers)
        assert r.status_code == 200, r.text
