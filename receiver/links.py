"""Signed one-click links (acknowledge from Slack): HMAC-SHA256 over incident, action and expiry.

A GET on a link only shows a confirmation page, because chat and mail scanners fetch links; the
POST acts, and each link works once (the store records its signature).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta


class LinkError(Exception):
    """The link is not valid."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign(secret: str, incident_id: uuid.UUID, action: str, expires: datetime) -> tuple[int, str]:
    exp = int(expires.timestamp())
    message = f"{incident_id}|{action}|{exp}".encode()
    return exp, _b64(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def link_path(secret: str, incident_id: uuid.UUID, action: str, now: datetime, ttl: timedelta) -> str:
    exp, sig = sign(secret, incident_id, action, now + ttl)
    return f"/incidents/{incident_id}/{action}-link?exp={exp}&sig={sig}"


def verify(secret: str, incident_id: uuid.UUID, action: str, exp: str, sig: str, now: datetime) -> None:
    try:
        expires = datetime.fromtimestamp(int(exp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise LinkError("the link is malformed") from None
    _, expected = sign(secret, incident_id, action, expires)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise LinkError("the link's signature is not valid")
    if expires <= now:
        raise LinkError("the link has expired")
