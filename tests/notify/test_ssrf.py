"""Webhook targets: IPv6 spellings of private IPv4 addresses, and HANDOVER_WEBHOOK_ALLOW_PRIVATE's reach.

Every literal below was accepted before while its plain IPv4 form was refused (issue 18, defects 6 and 11).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.config import Settings
from app.notify.channels import TargetRefused, address_refusal, resolve_target
from tests.conftest import TEST_SECRET

REFUSED_V6 = [
    "::127.0.0.1",  # IPv4-compatible loopback
    "::7f00:1",  # the same, in hex
    "::a9fe:a9fe",  # IPv4-compatible metadata address
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 well-known prefix
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::a00:1",
    "64:ff9b:1::808:808",  # NAT64 local-use prefix: refused whatever it embeds
    "2002:7f00:1::1",  # 6to4
    "2002:a9fe:a9fe::1",
    "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (inverted last 32 bits)
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254
    "fec0::1",  # site-local
    "fc00::1",  # unique-local
    "fd00::1",
    "fe80::1",  # link-local
    "ff02::1",  # multicast
    "ff0e::1",  # global-scope multicast is still not a host
    "::",  # unspecified
    "::1",  # loopback
    "100::1",  # discard-only
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # SRv6 SIDs
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT), reserved
]
REFUSED_V4 = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"]
REFUSED_V4 += ["224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1"]
PUBLIC = [
    "93.184.215.14",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8 via a public server
]


def _url(literal: str) -> str:
    return f"http://[{literal}]/hook" if ":" in literal else f"http://{literal}/hook"


@pytest.mark.parametrize("literal", REFUSED_V6 + REFUSED_V4)
def test_guard_refuses_private_targets_in_every_spelling(literal: str) -> None:
    ip = ipaddress.ip_address(literal)
    assert address_refusal(ip) is not None
    with pytest.raises(TargetRefused):
        resolve_target(_url(literal), allow_loopback=False)


@pytest.mark.parametrize("literal", PUBLIC)
def test_guard_lets_public_targets_through(literal: str) -> None:
    assert address_refusal(ipaddress.ip_address(literal)) is None
    assert address_refusal(ipaddress.ip_address(literal), allow_loopback=True) is None
    (address,) = resolve_target(_url(literal), allow_loopback=False).addresses
    assert ipaddress.ip_address(address) == ipaddress.ip_address(literal)


@pytest.mark.parametrize("literal", REFUSED_V6)
def test_api_refuses_ipv6_spellings_of_private_targets(client: TestClient, auth: Any, literal: str) -> None:
    r = client.post("/v1/webhook-endpoints", json={"url": _url(literal), "event_types": ["*"]}, headers=auth())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["body", "url"]
    assert client.get("/v1/webhook-endpoints", headers=auth()).json()["items"] == []


@pytest.mark.parametrize("literal", ["2606:4700:4700::1111", "64:ff9b::808:808"])
def test_api_accepts_public_ipv6_targets(client: TestClient, auth: Any, literal: str) -> None:
    r = client.post("/v1/webhook-endpoints", json={"url": _url(literal), "event_types": ["*"]}, headers=auth())
    assert r.status_code == 201, r.text


LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1"]
NOT_LOOPBACK = [lit for lit in REFUSED_V6 + REFUSED_V4 if lit not in LOOPBACK]


@pytest.mark.parametrize("literal", LOOPBACK)
def test_allow_private_opens_loopback(literal: str) -> None:
    assert address_refusal(ipaddress.ip_address(literal), allow_loopback=True) is None
    with pytest.raises(TargetRefused):
        resolve_target(_url(literal), allow_loopback=False)


@pytest.mark.parametrize("literal", NOT_LOOPBACK)
def test_allow_private_opens_nothing_but_loopback(literal: str) -> None:
    """Not 10/8, 172.16/12, 192.168/16, 169.254/16, fd00::/8, nor loopback spelt as an embedded IPv4."""
    assert address_refusal(ipaddress.ip_address(literal), allow_loopback=True) is not None
    with pytest.raises(TargetRefused):
        resolve_target(_url(literal), allow_loopback=True)


@pytest.mark.parametrize("url", ["http://10.0.0.1/h", "http://169.254.169.254/latest", "http://[fd00::1]/h"])
def test_api_with_allow_private_refuses_private_networks(
    client: TestClient, auth: Any, allow_private: Settings, url: str
) -> None:
    assert allow_private.webhook_allow_private
    r = client.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]}, headers=auth())
    assert r.status_code == 422, r.text
    r = client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=auth())
    assert r.status_code == 201, r.text


AUDIT_KEY = "A" * 43 + "="  # production also needs the key that signs audit checkpoints


def test_allow_private_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="HANDOVER_WEBHOOK_ALLOW_PRIVATE is refused in production"):
        Settings(
            environment="production", jwt_secret=TEST_SECRET, audit_signing_key=AUDIT_KEY, webhook_allow_private=True
        )
    for environment in ("development", "test"):
        assert Settings(
            environment=environment, jwt_secret=TEST_SECRET, webhook_allow_private=True
        ).webhook_allow_loopback
    production = Settings(environment="production", jwt_secret=TEST_SECRET, audit_signing_key=AUDIT_KEY)
    # Even settings copied without validation keep production webhooks off loopback.
    assert not production.model_copy(update={"webhook_allow_private": True}).webhook_allow_loopback
