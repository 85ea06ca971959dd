"""Templates that would freeze or bloat the server are refused at PUT, quickly, and nothing is written (issue 18,
defect 4); a render at send time has the same bounds; /healthz answers while a hostile template is validated.

Each attack ends in `|length`, `> 0` or the like so that the old sandbox, which let them through, stored them
(200) instead of failing on printing a huge value.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from app.notify import rendering
from tests.live import live_server
from tests.support.db import audit_count

URL = "/v1/notification-templates/client_intro/en"
POWER = "{{ (((10**64)**64)**64)**64 > 0 }}"  # one big-int power: 11.7 s holding the GIL before the fix
EXPONENTIAL_MACRO = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"

ATTACKS = [
    POWER,
    "{{ (10**64)**64 * (10**64)**64 > 0 }}",
    '{{ "x"|center(5*10**7)|length }}',  # 50 MB per render before the fix
    '{{ "x".center(10**8)|length }}',
    '{{ "x".ljust(99999999)|length }}',
    '{{ "1".zfill(99999999)|length }}',
    '{{ ("\t" * 100).expandtabs(99999)|length }}',
    '{{ "{:>99999999}".format(1)|length }}',
    '{{ "{:>{w}}".format(1, w=99999999)|length }}',
    '{{ ("%099999999d" % 1)|length }}',
    '{{ "%099999999d"|format(1)|length }}',
    '{{ ("x\n" * 5000)|indent(10000)|length }}',
    '{{ ("a" * 1000).replace("a", "x" * 1000)|length }}',
    '{% set s = "x" * 90000 %}{{ (s ~ s)|length }}',
    '{{ (1).to_bytes(10**8, "big")|length }}',
    "{{ range(50000)|list|length }}",
    "{% set a = [1] * 1000 %}{% set b = [1] * 1000 %}{{ [a] * 1000 == [b] * 1000 }}",  # 10**6 comparisons, x1000 more
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",  # 10**8 empty iterations
    EXPONENTIAL_MACRO,  # 2**40 calls
]


@pytest.mark.parametrize("body", ATTACKS)
def test_hostile_template_is_refused_at_put_and_nothing_written(
    client: TestClient, auth: Any, db: Database, body: str
) -> None:
    before = client.get(URL, headers=auth()).json()
    r = client.put(URL, json={"subject": "Hello {{ contact.name }}", "body": body}, headers=auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [
        {"loc": ["body", "body"], "msg": r.json()["errors"][0]["msg"], "type": "template_error"}
    ]
    assert client.get(URL, headers=auth()).json() == before
    assert audit_count(db, "notification_template.updated") == 0


def test_hostile_subject_is_refused_naming_the_subject(client: TestClient, auth: Any, db: Database) -> None:
    r = client.put(URL, json={"subject": '{{ "x"|center(5*10**7)|length }}', "body": "fine"}, headers=auth())
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "subject"]
    assert audit_count(db, "notification_template.updated") == 0


NORMAL = """\
Dear {{ contact.name|title }},
{% set ns = namespace(total=0) %}
{% for word in ["one", "two", "three"] %}{% set ns.total = ns.total + loop.index %}{% endfor %}
{{ "{:<12}|{:>8}".format(client.name, client.external_id) }} {{ "%5.1f%%"|format(12.345) }} {{ ns.total }}
{{ "-" * 40 }}
{{ (successor.name ~ " ") * 3 }}{{ successor.name|center(20)|trim }} {{ 2**10 }} {{ range(3)|join(",") }}
{{ "Your new manager is " ~ successor.name ~ ", " ~ (successor.title or "account manager") }}.
{{ [3, 1, 2]|sort|join(" ") }} {{ {"b": 2, "a": 1}|dictsort|map("first")|join }} {{ "long text here"|wordwrap(5) }}
{{ "  indented\nlines"|indent(2) }} {{ ack_url }}"""


def test_a_normal_template_still_renders(client: TestClient, auth: Any, db: Database) -> None:
    r = client.put(URL, json={"subject": "Hello {{ contact.name }}", "body": NORMAL}, headers=auth())
    assert r.status_code == 200, r.text
    rendered = rendering.validate("client_intro", rendering.Source("Hello {{ contact.name }}", NORMAL))
    assert "Dear Ada Client," in rendered.body
    assert "Acme Ltd    |     c-1  12.3% 6" in rendered.body
    assert "Sam Successor Sam Successor Sam Successor Sam Successor 1024 0,1,2" in rendered.body
    assert "1 2 3 ab" in rendered.body and "-" * 40 in rendered.body


def test_every_builtin_template_renders_in_the_bounded_sandbox() -> None:
    for (key, _locale), source in rendering.builtins().items():
        assert rendering.validate(key, source).body.strip()


def test_the_bounds_hold_at_send_time_on_real_data_too() -> None:
    """A template that is harmless on the sample but not on a real, bigger context fails as a TemplateError
    (the worker marks the notification dead) instead of running away."""
    source = rendering.Source(
        "Briefing",
        "{% if clients|length > 2 %}{{ (((10**64)**64)**64)**64 > 0 }}{% endif %}"
        "{% for a in clients %}{% for b in clients %}{% for c in clients %}{% endfor %}{% endfor %}{% endfor %}",
    )
    sample = rendering.SAMPLES["successor_briefing"]
    assert rendering.validate("successor_briefing", source).body  # two sample clients: fine
    big = {**sample, "clients": sample["clients"] * 1000}
    with pytest.raises(rendering.TemplateError, match="does too much"):
        rendering.render(source, big)
    quadratic = rendering.Source("Briefing", source.body.split("{% endif %}", 1)[1])
    with pytest.raises(rendering.TemplateError, match="does too much"):
        rendering.render(quadratic, big)


@pytest.mark.parametrize("body", [POWER, EXPONENTIAL_MACRO], ids=["one-huge-operation", "many-small-steps"])
def test_healthz_answers_while_a_hostile_template_is_validated(
    app: FastAPI, db: Database, auth: Any, body: str
) -> None:
    """Through a real uvicorn: TestClient drives the app from the test's own thread, so it cannot show the
    event loop (which answers /healthz) being starved while a threadpool worker validates the template."""
    with live_server(app) as url:
        answers: dict[str, httpx.Response] = {}

        def put() -> None:
            answers["put"] = httpx.put(url + URL, json={"subject": "Hi", "body": body}, headers=auth(), timeout=120)

        worker = threading.Thread(target=put, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30  # the old code validated the macro for ever
        with httpx.Client(base_url=url, timeout=5) as probe:
            while worker.is_alive() and time.monotonic() < deadline:
                assert probe.get("/healthz").status_code == 200
        worker.join(timeout=1)
        assert not worker.is_alive(), "the PUT did not finish"
        assert answers["put"].status_code == 422
