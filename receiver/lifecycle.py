"""The incident lifecycle people drive: acknowledge, unacknowledge, resolve, silence, unsilence.

Each action is a pure function of the incident as stored and `now`, returning a `Transition` (the
incident's lifecycle columns after the action, and its timeline event); an action that makes no sense for
the current state raises InvalidTransition (answered with 409). Input that can never be valid (a silence
without a reason, a duration that is not one, text the database cannot store) raises InvalidInput
(answered with 400): `silence_input` and `text_input` validate and clean every field people send. Pausing
(acknowledge, silence) keeps the escalation timers; resuming shifts them by the pause, so escalation
continues from where it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .model import Incident, IncidentStatus, Lifecycle, Transition, clean_text
from .timeutil import parse_duration, parse_rfc3339

ACTIONS = ("ack", "unack", "resolve", "silence", "unsilence")
MAX_SILENCE = timedelta(days=30)
MAX_REASON = 500  # characters of a silence reason kept


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


def _resumed(state: Lifecycle, paused_at: datetime | None, now: datetime) -> Lifecycle:
    """`state` with its escalation timers moved on by the pause that began at `paused_at`."""
    if paused_at is None:
        return state
    pause = max(now - paused_at, timedelta(0))
    anchor, next_at = state.escalation_anchor_at, state.next_escalation_at
    return replace(
        state,
        escalation_anchor_at=anchor + pause if anchor is not None else None,
        next_escalation_at=next_at + pause if next_at is not None else None,
    )


def acknowledge(incident: Incident, actor: str, now: datetime) -> Transition:
    status = incident.status
    if status == IncidentStatus.RESOLVED:
        raise InvalidTransition("the incident is resolved")
    if status == IncidentStatus.ACKNOWLEDGED or (
        status == IncidentStatus.SILENCED and incident.status_before_silence == IncidentStatus.ACKNOWLEDGED
    ):
        raise InvalidTransition(f"already acknowledged by {incident.acknowledged_by}")
    state = replace(incident.lifecycle, acknowledged_by=actor, acknowledged_at=now)
    if status == IncidentStatus.SILENCED:
        state = replace(state, status_before_silence=IncidentStatus.ACKNOWLEDGED)
    else:
        state = replace(state, status=IncidentStatus.ACKNOWLEDGED)
    return Transition(state, "acknowledged", {})


def unacknowledge(incident: Incident, actor: str, now: datetime) -> Transition:
    status = incident.status
    if status == IncidentStatus.SILENCED and incident.status_before_silence == IncidentStatus.ACKNOWLEDGED:
        state = replace(
            incident.lifecycle, status_before_silence=IncidentStatus.OPEN, acknowledged_by=None, acknowledged_at=None
        )
        return Transition(state, "unacknowledged", {})
    if status != IncidentStatus.ACKNOWLEDGED:
        raise InvalidTransition(f"the incident is {status}, not acknowledged")
    state = replace(incident.lifecycle, status=IncidentStatus.OPEN, acknowledged_by=None, acknowledged_at=None)
    state = _resumed(state, incident.acknowledged_at, now)
    return Transition(state, "unacknowledged", {})


def resolve(incident: Incident, actor: str, now: datetime) -> Transition:
    if incident.status == IncidentStatus.RESOLVED:
        raise InvalidTransition("the incident is already resolved")
    state = replace(
        incident.lifecycle,
        status=IncidentStatus.RESOLVED,
        resolved_at=now,
        resolved_by=actor,
        next_escalation_at=None,
        silenced_until=None,
        silenced_at=None,
        silenced_by=None,
        silence_reason=None,
        status_before_silence=None,
    )
    return Transition(state, "resolved", {"reason": "resolved by hand"})


def silence(incident: Incident, actor: str, now: datetime, until: datetime, reason: str) -> Transition:
    status = incident.status
    if status == IncidentStatus.RESOLVED:
        raise InvalidTransition("the incident is resolved")
    if until <= now:
        raise InvalidTransition("the silence must end in the future")
    if until - now > MAX_SILENCE:
        raise InvalidTransition("a silence lasts at most 30 days")
    detail = {"until": until.isoformat(), "reason": reason}
    if status == IncidentStatus.SILENCED:  # extend or shorten: the pause began when the silence did
        state = replace(incident.lifecycle, silenced_until=until, silenced_by=actor, silence_reason=reason)
        return Transition(state, "silenced", detail)
    state = replace(
        incident.lifecycle,
        status=IncidentStatus.SILENCED,
        status_before_silence=status,
        silenced_at=now,
        silenced_until=until,
        silenced_by=actor,
        silence_reason=reason,
    )
    return Transition(state, "silenced", detail)


def unsilence(incident: Incident, actor: str, now: datetime) -> Transition:
    if incident.status != IncidentStatus.SILENCED:
        raise InvalidTransition(f"the incident is {incident.status}, not silenced")
    state = replace(
        incident.lifecycle,
        status=incident.status_before_silence or IncidentStatus.OPEN,
        silenced_until=None,
        silenced_at=None,
        silenced_by=None,
        silence_reason=None,
        status_before_silence=None,
    )
    state = _resumed(state, incident.silenced_at, now)
    return Transition(state, "unsilenced", {})
