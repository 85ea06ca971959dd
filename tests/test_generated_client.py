"""A client generated from openapi/openapi.json drives a real server through one handover, end to end.

openapi-python-client generates a package from the committed contract (any generator warning fails the
test), `handover serve` runs a real server on a fresh SQLite file (migrated at start), and the scenario
uses only the unmodified generated code: directory batches, the signed HR exit webhook, plan, approve,
access checks before and after the effective time, execution. If the contract drifts from what the
server accepts or answers, a typed call here fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
import os
import pkgutil
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.core.auth import mint_token
from app.core.config import Settings
from app.core.signing import sign

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "openapi" / "openapi.json"
PACKAGE = "handover_client"
BIN = Path(sys.executable).parent

JWT_SECRET = "generated-client-secret-0123456789abcdef"  # noqa: S105
JWT_ISSUER = "https://id.example.test"
JWT_AUDIENCE = "handover-service"
HR_SECRET = "whsec_" + base64.b64encode(b"generated-client-hr-secret-32-bytes!").decode()


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} is not installed next to {sys.executable} (pip install -e '.[dev]')"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported whole (every api function and model must at least import)."""
    out = tmp_path_factory.mktemp("generated")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff post-hooks
    result = subprocess.run(
        [
            _tool("openapi-python-client"),
            "generate",
            "--path",
            str(CONTRACT),
            "--output-path",
            str(out / PACKAGE),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr  # --fail-on-warning: any warning fails
    sys.path.insert(0, str(out))
    try:
        package = importlib.import_module(PACKAGE)
        for module in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."):
            importlib.import_module(module.name)
        yield package
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDOVER_")}
    env.update(
        HANDOVER_ENVIRONMENT="test",
        HANDOVER_DATABASE_URL=database_url,
        HANDOVER_JWT_SECRET=JWT_SECRET,
        HANDOVER_JWT_ISSUER=JWT_ISSUER,
        HANDOVER_JWT_AUDIENCE=JWT_AUDIENCE,
        HANDOVER_HR_WEBHOOK_SECRET=HR_SECRET,
        HANDOVER_LOG_LEVEL="WARNING",
    )
    return env


@dataclass
class Booting:
    base_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float


@pytest.fixture(scope="module")
def booting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booting]:
    """`handover serve` (it migrates the fresh SQLite file first) on a free port; always stopped.

    Started before the client is generated, so that the two overlap.
    """
    workdir = tmp_path_factory.mktemp("server")
    env = _server_env(f"sqlite:///{workdir / 'handover.db'}")
    port = _free_port()
    log = workdir / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [_tool("handover"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Booting(f"http://127.0.0.1:{port}", proc, log, time.monotonic())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(booting_server: Booting, api: ModuleType) -> str:
    """The base URL once GET /readyz (through the generated client) answers, at most 45 s after the start.

    Its parameters are in this order so that the server boots while the client is generated.
    """
    from handover_client import Client
    from handover_client.api.ops import ops_readyz
    from handover_client.models import Health

    boot = booting_server
    probe = Client(base_url=boot.base_url, timeout=httpx.Timeout(2.0))
    while True:
        assert boot.proc.poll() is None, f"the server exited ({boot.proc.returncode}):\n{boot.log.read_text()}"
        try:
            if isinstance(ops_readyz.sync(client=probe), Health):
                return boot.base_url
        except httpx.TransportError:
            pass
        assert time.monotonic() < boot.started + 45, f"the server was not ready within 45 s:\n{boot.log.read_text()}"
        time.sleep(0.2)  # waiting for a process to boot, not for a schedule


def _settings() -> Settings:
    """The server's settings as far as tokens go; nothing from this process's environment or a .env file."""
    return Settings(
        _env_file=None,
        environment="test",
        database_url="sqlite://",
        jwt_algorithms=["HS256"],
        jwt_secret=JWT_SECRET,
        jwt_key_id=None,
        jwt_issuer=JWT_ISSUER,
        jwt_audience=JWT_AUDIENCE,
    )


def _ok(response: Any, expected_status: int, model: type) -> Any:
    """The typed body of a `*_detailed` call, after checking its status and type."""
    detail = response.content.decode(errors="replace")
    assert response.status_code == expected_status, detail
    assert isinstance(response.parsed, model), detail
    return response.parsed


def test_generated_names_read_naturally(api: ModuleType) -> None:
    """One named enum per concept and short model names: nothing a generator had to make up from a property path
    (`AccessDecisionLevelType0`, `Body_…`, `app__x__Y`, `Page_X_`), and each concept's enum once."""
    from handover_client import models

    names = [n for n in dir(models) if n[:1].isupper()]
    assert names
    made_up = [n for n in names if re.search(r"Type\d|^Body|__|_$", n)]
    assert made_up == []
    contract = json.loads(CONTRACT.read_text(encoding="utf-8"))
    for name in contract["components"]["schemas"]:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", name), name
    for concept in ("HandoverStatus", "ItemStatus", "ExitReason", "RiskBand", "GrantLevel", "EventType"):
        assert concept in names, concept
    # Every enum is declared once, as a component: no inline `enum` left anywhere in the document.
    inline = [m.start() for m in re.finditer(r'"enum"', json.dumps(contract["paths"]))]
    assert inline == []


def test_generated_client_runs_a_handover_end_to_end(server: str) -> None:
    from handover_client import AuthenticatedClient, Client
    from handover_client.api.access import access_check
    from handover_client.api.directory import clients_batch_upsert, clients_get, employees_batch_upsert, employees_get
    from handover_client.api.handovers import (
        handovers_approve,
        handovers_execute,
        handovers_get,
        handovers_items_list,
        handovers_plan,
    )
    from handover_client.api.hr_events import hr_events_receive
    from handover_client.models import (
        AccessAction,
        AccessCheck,
        AccessDecision,
        AccessReason,
        BatchResult,
        ClientBatch,
        ClientBatchItem,
        ClientOut,
        ClientTier,
        EmployeeBatch,
        EmployeeBatchItem,
        EmployeeOut,
        ExitReason,
        GrantLevel,
        HandoverOut,
        HandoverStatus,
        HrEventResult,
        HrExitData,
        HrExitEvent,
        PageItemOut,
        PlanSummary,
        Problem,
    )

    settings = _settings()

    def client_as(role: str, *, emp: str | None = None, scope: str | None = None) -> AuthenticatedClient:
        token = mint_token(settings, role=role, sub=f"e2e-{role}-{emp or 'x'}", emp=emp, scope=scope)
        return AuthenticatedClient(base_url=server, token=token, timeout=httpx.Timeout(30.0))

    crm = client_as("integration", scope="directory:read directory:write access:check")
    manager = client_as("manager", emp="mgr")
    admin = client_as("admin")

    # 1. The CRM mirrors the team and the leaver's book into the directory (batch endpoints, all or nothing).
    people = [
        EmployeeBatchItem(external_id="mgr", name="Mia Manager", email="mia@example.com", seniority=4, capacity=40),
        EmployeeBatchItem(
            external_id="leaver",
            name="Leo Leaver",
            email="leo@example.com",
            seniority=3,
            manager="mgr",
            skills=["banking"],
            regions=["EMEA"],
            languages=["en"],
        ),
        EmployeeBatchItem(
            external_id="senior",
            name="Sam Senior",
            email="sam@example.com",
            seniority=3,
            manager="mgr",
            skills=["banking"],
            regions=["EMEA"],
            languages=["en"],
        ),
        EmployeeBatchItem(
            external_id="junior",
            name="Jo Junior",
            email="jo@example.com",
            seniority=1,
            manager="mgr",
            regions=["EMEA"],
            languages=["en"],
        ),
    ]
    written = _ok(employees_batch_upsert.sync_detailed(client=crm, body=EmployeeBatch(items=people)), 200, BatchResult)
    assert (written.created, written.updated) == (4, 0)
    assert written.external_ids == ["mgr", "leaver", "senior", "junior"]

    book = [
        ClientBatchItem(
            external_id="acme",
            name="Acme Bank",
            tier=ClientTier.KEY,
            owner="leaver",
            annual_value=250_000,
            industry="banking",
            region="EMEA",
            language="en",
        ),
        ClientBatchItem(
            external_id="globex",
            name="Globex",
            tier=ClientTier.STANDARD,
            owner="leaver",
            annual_value=40_000,
            region="EMEA",
            language="en",
        ),
    ]
    written = _ok(clients_batch_upsert.sync_detailed(client=crm, body=ClientBatch(items=book)), 200, BatchResult)
    assert (written.created, written.external_ids) == (2, ["acme", "globex"])

    # 2. HR announces the exit: a Standard Webhooks delivery, signed over the exact bytes the client sends.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    effective_at = now + dt.timedelta(days=2)
    event = HrExitEvent(
        type_="employee.exit",
        timestamp=now,
        data=HrExitData(
            employee="leaver",
            effective_at=effective_at,
            reason=ExitReason.RESIGNATION,
            destination_competitor=False,
        ),
    )
    # The generated function sends `json=event.to_dict()` through httpx; httpx's own encoder gives those bytes.
    body = httpx.Request("POST", server, json=event.to_dict()).content
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    hr = Client(base_url=server, timeout=httpx.Timeout(30.0))  # no bearer token: the signature authenticates
    opened = _ok(
        hr_events_receive.sync_detailed(
            client=hr,
            body=event,
            webhook_id=msg_id,
            webhook_timestamp=str(timestamp),
            webhook_signature=sign(HR_SECRET, msg_id, timestamp, body),
        ),
        200,
        HrEventResult,
    )
    assert (opened.type_, opened.replayed, opened.webhook_id) == ("employee.exit", False, msg_id)
    assert isinstance(opened.handover_id, int)
    handover_id = opened.handover_id

    replayed = _ok(
        hr_events_receive.sync_detailed(
            client=hr,
            body=event,
            webhook_id=msg_id,
            webhook_timestamp=str(timestamp),
            webhook_signature=sign(HR_SECRET, msg_id, timestamp, body),
        ),
        200,
        HrEventResult,
    )
    assert (replayed.replayed, replayed.handover_id) == (True, handover_id)

    refused = hr_events_receive.sync_detailed(
        client=hr,
        body=event,
        webhook_id=f"msg_{uuid.uuid4().hex}",
        webhook_timestamp=str(timestamp),
        webhook_signature=sign(HR_SECRET, msg_id, timestamp, body),  # signed for another webhook-id
    )
    assert refused.status_code == 401
    assert isinstance(refused.parsed, Problem)

    handover = _ok(handovers_get.sync_detailed(handover_id, client=manager), 200, HandoverOut)
    assert (handover.leaver, handover.manager, handover.status) == ("leaver", "mgr", HandoverStatus.DRAFT)
    assert handover.effective_at == effective_at
    leaver = _ok(employees_get.sync_detailed("leaver", client=crm), 200, EmployeeOut)
    assert leaver.status.value == "leaving"

    # 3. Plan: every client gets a successor who fits (the key account needs seniority 2 or more).
    plan = _ok(handovers_plan.sync_detailed(handover_id, client=manager), 200, PlanSummary)
    assert (plan.dry_run, plan.items, plan.assigned, plan.interim) == (False, 2, 2, 0)
    items = _ok(handovers_items_list.sync_detailed(handover_id, client=manager), 200, PageItemOut)
    successors = {item.client: item.successor for item in items.items}
    assert set(successors) == {"acme", "globex"}
    assert successors["acme"] == "senior"
    assert successors["globex"] in {"senior", "junior"}
    assert not any(item.needs_attention for item in items.items)

    # 4. The leaver's manager approves.
    approved = _ok(handovers_approve.sync_detailed(handover_id, client=manager), 200, HandoverOut)
    assert approved.status == HandoverStatus.APPROVED
    assert approved.approved_by is not None

    def check(employee: str, client: str, action: AccessAction, at: dt.datetime) -> AccessDecision:
        question = AccessCheck(employee=employee, client=client, action=action, at=at)
        decision = _ok(access_check.sync_detailed(client=crm, body=question), 200, AccessDecision)
        assert (decision.employee, decision.client, decision.action.value) == (employee, client, action.value)
        return decision

    # 5. Access follows the approved windows. Before the effective time: the successor shadows (view only),
    #    the leaver still owns.
    before = effective_at - dt.timedelta(hours=1)
    shadow = check("senior", "acme", AccessAction.VIEW, before)
    assert (shadow.allowed, shadow.level) == (True, GrantLevel.SHADOW)
    assert shadow.valid_until == effective_at
    shadow_edit = check("senior", "acme", AccessAction.EDIT, before)
    assert (shadow_edit.allowed, shadow_edit.reason) == (False, AccessReason.VIEW_ONLY)
    still_owner = check("leaver", "acme", AccessAction.EDIT, before)
    assert (still_owner.allowed, still_owner.level) == (True, GrantLevel.OWNER)

    #    After it: the successor owns, the leaver has nothing, for every client of the handover.
    after = effective_at + dt.timedelta(hours=1)
    for client_id, successor in successors.items():
        owner = check(successor, client_id, AccessAction.EDIT, after)
        assert (owner.allowed, owner.level, owner.reason) == (
            True,
            GrantLevel.OWNER,
            AccessReason.GRANTED,
        )
        gone = check("leaver", client_id, AccessAction.VIEW, after)
        assert (gone.allowed, gone.reason) == (False, AccessReason.EMPLOYEE_DEPARTED)

    # 6. An admin executes now (an immediate exit): ownership moves in the directory, and the access
    #    decision now, not only at the old effective time, follows.
    executed = _ok(handovers_execute.sync_detailed(handover_id, client=admin), 200, HandoverOut)
    assert executed.status == HandoverStatus.EXECUTED
    assert executed.executed_at is not None
    for client_id, successor in successors.items():
        moved = _ok(clients_get.sync_detailed(client_id, client=crm), 200, ClientOut)
        assert moved.owner == successor
        current = dt.datetime.now(dt.UTC)
        assert check(successor, client_id, AccessAction.EDIT, current).allowed
        denied = check("leaver", client_id, AccessAction.VIEW, current)
        assert (denied.allowed, denied.reason) == (False, AccessReason.EMPLOYEE_DEPARTED)
    departed = _ok(employees_get.sync_detailed("leaver", client=crm), 200, EmployeeOut)
    assert departed.status.value == "departed"

    # A token naming the leaver stops working once they have left.
    leavers_token = client_as("account_manager", emp="leaver")
    locked_out = employees_get.sync_detailed("leaver", client=leavers_token)
    assert locked_out.status_code == 403
    assert isinstance(locked_out.parsed, Problem)
