"""`Authorization: Basic ...` is read by one parser, for the webhook's credentials and the page users' alike."""

from __future__ import annotations

import base64

import pytest

from receiver.config import parse_config
from receiver.web.auth import parse_basic, webhook_authorized


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("Basic " + b64(b"am:pw"), ("am", "pw"), id="plain"),
        pytest.param("basic " + b64(b"am:pw"), ("am", "pw"), id="lower-case-scheme"),
        pytest.param("BASIC " + b64(b"am:pw"), ("am", "pw"), id="upper-case-scheme"),
        pytest.param("Basic   " + b64(b"am:pw") + "  ", ("am", "pw"), id="extra-spaces"),
        pytest.param("Basic " + b64(b"am:pw:more"), ("am", "pw:more"), id="colon-in-password"),
        pytest.param("Basic " + b64(b":"), ("", ""), id="empty-name-and-password"),
        pytest.param("Basic " + b64("ünï:cödé".encode()), ("ünï", "cödé"), id="utf-8"),
        pytest.param("Basic " + b64(b"ampw"), None, id="no-colon"),
        pytest.param("Basic " + b64(b"\xff\xfe:pw"), None, id="not-utf-8"),
        pytest.param("Basic !!notbase64!!", None, id="not-base64"),
        pytest.param("Basic " + b64(b"am:pw").rstrip("="), None, id="padding-missing"),
        pytest.param("Basic", None, id="no-value"),
        pytest.param("Basic ", None, id="empty-value"),
        pytest.param(" Basic " + b64(b"am:pw"), None, id="space-before-scheme"),
        pytest.param("Bearer " + b64(b"am:pw"), None, id="other-scheme"),
        pytest.param(b64(b"am:pw"), None, id="no-scheme"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_basic_credentials_are_parsed_the_same_for_the_webhook_and_the_pages(
    header: str | None, expected: tuple[str, str] | None
) -> None:
    assert parse_basic(header) == expected
    webhook = parse_config("webhook:\n  basic_auth:\n    username: am\n    password_env: P\n", env={"P": "pw"}).webhook
    assert webhook_authorized(webhook, header) == (expected == ("am", "pw"))


def test_basic_credentials_do_not_pass_a_webhook_that_wants_a_token() -> None:
    webhook = parse_config("webhook:\n  token_env: T\n", env={"T": "pw"}).webhook
    assert not webhook_authorized(webhook, "Basic " + b64(b"am:pw"))
    assert webhook_authorized(webhook, "Bearer pw")
