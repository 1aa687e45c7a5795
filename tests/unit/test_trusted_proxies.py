"""Trusted proxies (ui.proxy_auth.trusted_proxies): which peers may name the user and the client's address."""

from __future__ import annotations

import ipaddress
import json

import pytest
from aiohttp.test_utils import make_mocked_request

from receiver.config import Config, parse_config
from receiver.web.users import client_address


def config(*trusted: str) -> Config:
    return parse_config(json.dumps({"ui": {"proxy_auth": {"trusted_proxies": list(trusted)}}}), env={})


def address(cfg: Config, remote: str, forwarded: str | None = None) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return client_address(cfg, make_mocked_request("GET", "/", headers=headers).clone(remote=remote))


@pytest.mark.parametrize(
    ("trusted", "remote", "expected"),
    [
        pytest.param(("10.0.0.0/8",), "10.1.2.3", "203.0.113.9", id="in-network"),
        pytest.param(("10.0.0.1/8",), "10.200.0.1", "203.0.113.9", id="host-bits-set"),
        pytest.param(("127.0.0.1",), "127.0.0.1", "203.0.113.9", id="one-address"),
        pytest.param(("127.0.0.1",), "127.0.0.2", "127.0.0.2", id="next-address"),
        pytest.param(("10.0.0.0/8",), "11.0.0.1", "11.0.0.1", id="outside"),
        pytest.param(("10.0.0.0/8", "::1"), "::1", "203.0.113.9", id="ipv6-address"),
        pytest.param(("fd00::/8",), "fd12::1", "203.0.113.9", id="ipv6-network"),
        pytest.param(("10.0.0.0/8",), "::ffff:10.0.0.1", "::ffff:10.0.0.1", id="ipv4-mapped-is-not-ipv4"),
        pytest.param(("10.0.0.0/8",), "not-an-address", "not-an-address", id="not-an-address"),
        pytest.param((), "10.0.0.1", "10.0.0.1", id="none-trusted"),
    ],
)
def test_only_a_trusted_peer_passes_the_client_address_on(trusted: tuple[str, ...], remote: str, expected: str) -> None:
    cfg = config(*trusted) if trusted else parse_config("", env={})
    assert address(cfg, remote, "203.0.113.9") == expected


def test_the_nearest_untrusted_hop_is_the_client() -> None:
    cfg = config("10.0.0.0/8", "192.168.1.1")
    assert address(cfg, "10.0.0.1", "198.51.100.7, 203.0.113.9, 192.168.1.1, 10.9.9.9") == "203.0.113.9"
    assert address(cfg, "10.0.0.1", "garbage, 10.9.9.9") == "garbage"
    assert address(cfg, "10.0.0.1", "10.1.1.1") == "10.0.0.1"  # every hop trusted: the peer
    assert address(cfg, "10.0.0.1") == "10.0.0.1"


def test_the_config_keeps_the_networks_parsed() -> None:
    assert config("10.0.0.1/8", "::1").ui.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
