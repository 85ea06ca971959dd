"""The README's links stay inside the repository, and its "Try it" requests work as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_point_at_files_in_the_repository() -> None:
    targets = [t.split("#", 1)[0] for t in LINK.findall(README) if not t.startswith(("http://", "https://", "#"))]
    assert "docs/DESIGN.md" in targets
    for target in targets:
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), target
        assert path.exists(), target


def _commands() -> list[str]:
    block = README.split("<!-- try-it -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        current += line + "\n"
        try:
            shlex.split(current)
        except ValueError:  # an open quote: the command goes on
            continue
        if current.rstrip().endswith("\\"):
            continue
        commands.append(current.replace("\\\n", " ").strip())
        current = ""
    return commands


def test_try_it_runs_as_written(client: TestClient, settings: Settings, token: Any) -> None:
    tokens: dict[str, str] = {}
    variables = {"API": ""}
    handover_id = None
    answers = []
    for command in _commands():
        assign = re.match(r"^(\w+)=\$\(\.venv/bin/handover token (.*) \| tail -1\)$", command)
        if assign:
            args = shlex.split(assign.group(2))
            opts = dict(zip(args[::2], args[1::2], strict=True))
            tokens[assign.group(1)] = token(opts["--role"], emp=opts.get("--emp"))
            continue
        plain = re.match(r"^(\w+)=(\S+)$", command)
        if plain:
            variables[plain.group(1)] = ""  # the base URL: TestClient's own
            continue
        argv = shlex.split(command)
        assert argv[0] == "curl", command
        method, url, headers, body = "GET", None, {}, None
        i = 1
        while i < len(argv):
            arg = argv[i]
            if arg == "-X":
                method, i = argv[i + 1], i + 2
            elif arg == "-H":
                name, value = argv[i + 1].split(": ", 1)
                headers[name] = value
                i += 2
            elif arg == "-d":
                body, i = argv[i + 1], i + 2
            elif arg.startswith("-"):
                i += 1
            else:
                url, i = arg, i + 1
        assert url is not None, command
        for name, value in tokens.items():
            headers = {k: v.replace(f"${name}", value) for k, v in headers.items()}
        url = url.replace("$API", variables["API"])
        if handover_id is not None:
            url = url.replace("/v1/handovers/1/", f"/v1/handovers/{handover_id}/")
        r = client.request(method, url, headers=headers, content=body)
        assert r.status_code < 300, (command, r.status_code, r.text)
        if method == "POST" and url == "/v1/handovers":
            handover_id = r.json()["id"]
        if body is not None:
            json.loads(body)  # the README's bodies are JSON as written
        answers.append(r.json())
    assert handover_id is not None and len(answers) == 7
    items = answers[4]["items"]
    assert sorted((i["client"], i["successor"]) for i in items) == [("c1", "e2"), ("c2", "e2")]
    assert answers[5]["status"] == "approved"
