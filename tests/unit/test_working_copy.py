"""The planner's working copy of the state (correlation._working_copy): every field of every incident, a set
of firing members of its own, one copy per incident however many maps name it, the caller's state untouched."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime

from receiver.correlation import IncidentState, MemberState, State, _working_copy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _incident(key: str, status: str) -> IncidentState:
    # every field away from its default, so that a field the copy forgets shows
    return IncidentState(
        uuid.uuid4(),
        key,
        status,
        "critical",
        {"alerts_received": 3},
        {"fp-a"},
        flap_count=2,
        resolved_at=T0,
        kind="error_rate",
        first_seen=T0,
        firing_elsewhere=True,
    )


def test_the_copy_keeps_every_field_and_owns_its_firing_set() -> None:
    active, resolved = _incident("a::x", "open"), _incident("b::x", "resolved")
    member = MemberState("fp-a", active.id, "firing", T0)
    state = State(
        active={active.incident_key: active},
        reopenable={resolved.incident_key: resolved},
        incidents={active.id: active, resolved.id: resolved},
        members={"fp-a": member},
    )

    work = _working_copy(state)

    for original in (active, resolved):
        copy = work.incidents[original.id]
        assert copy is not original
        for f in fields(IncidentState):
            assert getattr(copy, f.name) == getattr(original, f.name), f.name
        copy.firing.add("fp-b")
        copy.status = "acknowledged"
        assert original.firing == {"fp-a"} and original.status != "acknowledged"
    # one copy per incident: the maps name the same object, as the rules expect when they move it between them
    assert work.active[active.incident_key] is work.incidents[active.id]
    assert work.reopenable[resolved.incident_key] is work.incidents[resolved.id]
    assert work.members["fp-a"] is member
