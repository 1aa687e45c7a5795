"""The lifecycle actions as pure functions of a hand-built Incident and `now` (the HTTP and database paths are
tested in tests/test_escalation.py): each returns the lifecycle columns after it and its event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver import lifecycle
from receiver.model import Incident, IncidentStatus

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def incident(**changes: Any) -> Incident:
    values: dict[str, Any] = dict(
        id=uuid.uuid4(),
        incident_key="GET /x::latency",
        route="GET /x",
        kind="latency",
        severity="critical",
        status="open",
        first_seen=T0,
        last_seen=T0,
        acknowledged_by=None,
        acknowledged_at=None,
        escalation_level=1,
        escalated_at=T0,
        owner=None,
        metadata={},
        resolved_at=None,
        resolved_by=None,
        mapping_rule="default",
        flap_count=0,
        next_escalation_at=T0 + timedelta(minutes=15),
        escalation_anchor_at=T0,
        escalation_cycle=1,
        silenced_until=None,
        silenced_at=None,
        silenced_by=None,
        silence_reason=None,
        status_before_silence=None,
    )
    return Incident(**values | changes)


def test_acknowledge_then_unacknowledge_shifts_the_timers_by_the_pause() -> None:
    now = T0 + timedelta(minutes=2)
    acked = lifecycle.acknowledge(incident(), "alice", now)
    assert acked.event == "acknowledged"
    assert (acked.state.status, acked.state.acknowledged_by, acked.state.acknowledged_at) == (
        IncidentStatus.ACKNOWLEDGED,
        "alice",
        now,
    )
    later = now + timedelta(minutes=10)
    resumed = lifecycle.unacknowledge(
        incident(status="acknowledged", acknowledged_by="alice", acknowledged_at=now), "alice", later
    )
    assert resumed.state.status == IncidentStatus.OPEN and resumed.state.acknowledged_by is None
    assert resumed.state.escalation_anchor_at == T0 + timedelta(minutes=10)
    assert resumed.state.next_escalation_at == T0 + timedelta(minutes=25)


def test_acknowledging_a_silenced_incident_keeps_it_silenced() -> None:
    silenced = incident(
        status="silenced", status_before_silence="open", silenced_at=T0, silenced_until=T0 + timedelta(hours=1)
    )
    t = lifecycle.acknowledge(silenced, "bob", T0 + timedelta(minutes=1))
    assert (t.state.status, t.state.status_before_silence) == ("silenced", "acknowledged")
    with pytest.raises(lifecycle.InvalidTransition, match="already acknowledged by bob"):
        lifecycle.acknowledge(
            incident(status="silenced", status_before_silence="acknowledged", acknowledged_by="bob"), "carol", T0
        )


def test_silence_and_unsilence() -> None:
    until = T0 + timedelta(hours=4)
    t = lifecycle.silence(incident(status="acknowledged"), "alice", T0, until, "deploy")
    assert (t.state.status, t.state.status_before_silence, t.state.silenced_until) == (
        "silenced",
        "acknowledged",
        until,
    )
    assert t.detail == {"until": until.isoformat(), "reason": "deploy"}
    back = lifecycle.unsilence(
        incident(status="silenced", status_before_silence="acknowledged", silenced_at=T0, silenced_until=until),
        "alice",
        T0 + timedelta(hours=1),
    )
    assert back.state.status == "acknowledged" and back.state.silenced_until is None
    assert back.state.next_escalation_at == T0 + timedelta(hours=1, minutes=15)


def test_resolve_clears_the_silence_and_the_timer_and_cannot_repeat() -> None:
    t = lifecycle.resolve(incident(status="silenced", silenced_until=T0 + timedelta(hours=1)), "alice", T0)
    assert (t.state.status, t.state.resolved_by, t.state.next_escalation_at, t.state.silenced_until) == (
        "resolved",
        "alice",
        None,
        None,
    )
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.resolve(incident(status="resolved"), "alice", T0)
