"""The incident lifecycle people drive: acknowledge, unacknowledge, resolve, silence, unsilence.

Each action is a pure function of the incident's current row and `now`, returning the columns to
change and the timeline event; an action that makes no sense for the current state raises
InvalidTransition (answered with 409). Input that can never be valid (a silence without a reason, a
duration that is not one, text the database cannot store) raises InvalidInput (answered with 400):
`silence_input` and `text_input` validate and clean every field people send. Pausing (acknowledge,
silence) keeps the escalation timers; resuming shifts them by the pause, so escalation continues from
where it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .model import clean_text
from .timeutil import parse_duration, parse_rfc3339

ACTIONS = ("ack", "unack", "resolve", "silence", "unsilence")
MAX_SILENCE = timedelta(days=30)
MAX_REASON = 500  # characters of a silence reason kept

Change = tuple[dict[str, Any], str, dict[str, Any]]


class InvalidTransition(Exception):
    """The action does not apply to the incident in its current state."""


class InvalidInput(ValueError):
    """The action's input is not valid, whatever the incident's state."""


def text_input(value: Any, name: str, *, limit: int) -> str:
    """A text field made storable: "" when absent; NUL and lone surrogates replaced, as the webhook does;
    surrounding white space dropped; at most `limit` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    return clean_text(value.strip()[:limit].strip())


def silence_input(body: Mapping[str, Any], now: datetime) -> tuple[datetime, str]:
    """(until, reason) from `{"reason": ..., "until": RFC 3339}` or `{"reason": ..., "duration": "4h"}`."""
    reason = text_input(body.get("reason"), "reason", limit=MAX_REASON)
    if not reason:
        raise InvalidInput("a silence needs a reason")
    if body.get("until"):
        raw = body["until"]
        if not isinstance(raw, str) or len(raw) > 64:
            raise InvalidInput("until must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
        try:
            until = parse_rfc3339(clean_text(raw))  # cleaned: the reason quotes it back
        except ValueError as e:
            raise InvalidInput(f"until: {e}") from None
        if until is None:
            raise InvalidInput("until must be a time")
    else:
        raw = body.get("duration") or ""
        if isinstance(raw, str) and len(raw) > 64:
            raise InvalidInput("duration is too long")
        try:
            duration = parse_duration(clean_text(raw) if isinstance(raw, str) else raw)
        except (ValueError, OverflowError, TypeError) as e:  # Overflow: "1e400" or a huge number of days
            raise InvalidInput(f"duration: {e}" if isinstance(e, ValueError) else "duration is too long") from None
        if duration > MAX_SILENCE:
            raise InvalidInput("a silence lasts at most 30 days")
        until = now + duration
    if until <= now:
        raise InvalidInput("the silence must end in the future")
    if until - now > MAX_SILENCE:
        raise InvalidInput("a silence lasts at most 30 days")
    return until, reason


def _shift(row: Mapping[str, Any], paused_at: datetime | None, now: datetime) -> dict[str, Any]:
    if paused_at is None:
        return {}
    pause = max(now - paused_at, timedelta(0))
    out: dict[str, Any] = {}
    if row["escalation_anchor_at"] is not None:
        out["escalation_anchor_at"] = row["escalation_anchor_at"] + pause
    if row["next_escalation_at"] is not None:
        out["next_escalation_at"] = row["next_escalation_at"] + pause
    return out


def acknowledge(row: Mapping[str, Any], actor: str, now: datetime) -> Change:
    status = row["status"]
    if status == "resolved":
        raise InvalidTransition("the incident is resolved")
    if status == "acknowledged" or (status == "silenced" and row["status_before_silence"] == "acknowledged"):
        raise InvalidTransition(f"already acknowledged by {row['acknowledged_by']}")
    values: dict[str, Any] = {"acknowledged_by": actor, "acknowledged_at": now}
    if status == "silenced":
        values["status_before_silence"] = "acknowledged"
    else:
        values["status"] = "acknowledged"
    return values, "acknowledged", {}


def unacknowledge(row: Mapping[str, Any], actor: str, now: datetime) -> Change:
    status = row["status"]
    if status == "silenced" and row["status_before_silence"] == "acknowledged":
        return ({"status_before_silence": "open", "acknowledged_by": None, "acknowledged_at": None},
                "unacknowledged", {})
    if status != "acknowledged":
        raise InvalidTransition(f"the incident is {status}, not acknowledged")
    values = {"status": "open", "acknowledged_by": None, "acknowledged_at": None,
              **_shift(row, row["acknowledged_at"], now)}
    return values, "unacknowledged", {}


def resolve(row: Mapping[str, Any], actor: str, now: datetime) -> Change:
    if row["status"] == "resolved":
        raise InvalidTransition("the incident is already resolved")
    values = {"status": "resolved", "resolved_at": now, "resolved_by": actor, "next_escalation_at": None,
              "silenced_until": None, "silenced_at": None, "silenced_by": None, "silence_reason": None,
              "status_before_silence": None}
    return values, "resolved", {"reason": "resolved by hand"}


def silence(row: Mapping[str, Any], actor: str, now: datetime, until: datetime, reason: str) -> Change:
    status = row["status"]
    if status == "resolved":
        raise InvalidTransition("the incident is resolved")
    if until <= now:
        raise InvalidTransition("the silence must end in the future")
    if until - now > MAX_SILENCE:
        raise InvalidTransition("a silence lasts at most 30 days")
    detail = {"until": until.isoformat(), "reason": reason}
    if status == "silenced":  # extend or shorten: the pause began when the silence did
        return {"silenced_until": until, "silenced_by": actor, "silence_reason": reason}, "silenced", detail
    values = {"status": "silenced", "status_before_silence": status, "silenced_at": now, "silenced_until": until,
              "silenced_by": actor, "silence_reason": reason}
    return values, "silenced", detail


def unsilence(row: Mapping[str, Any], actor: str, now: datetime) -> Change:
    if row["status"] != "silenced":
        raise InvalidTransition(f"the incident is {row['status']}, not silenced")
    values = {"status": row["status_before_silence"] or "open", "silenced_until": None, "silenced_at": None,
              "silenced_by": None, "silence_reason": None, "status_before_silence": None,
              **_shift(row, row["silenced_at"], now)}
    return values, "unsilenced", {}
