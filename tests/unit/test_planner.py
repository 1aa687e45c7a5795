"""The correlation planner (receiver.correlation.plan) on hand-built state: one test per rule, no database.

tests/test_correlation.py checks the same rules through the store on a real PostgreSQL; here each rule is
pinned down on the plan itself, with states the database would rarely produce on demand.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.correlation import (
    RECONCILER,
    STALE_RESOLVER,
    Action,
    IncidentChange,
    IncidentState,
    MemberState,
    Plan,
    State,
    dedupe,
    plan,
)
from receiver.model import Alert, AlertStatus, IncidentStatus, Outcome, Severity
from receiver.rules import Mapping

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
ROUTE, KIND = "GET /checkout", "latency"
KEY = f"{ROUTE}::{KIND}"


def alert(
    fingerprint: str,
    status: AlertStatus = AlertStatus.FIRING,
    *,
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
) -> Alert:
    return Alert(
        0,
        fingerprint,
        status,
        {"alertname": f"Alert-{fingerprint}"},
        annotations or {},
        starts_at,
        ends_at,
        "http://prometheus/graph",
    )


def resolved(
    fingerprint: str, *, starts_at: datetime = T0, ends_at: datetime | None = T0 + timedelta(minutes=5)
) -> Alert:
    return alert(fingerprint, AlertStatus.RESOLVED, starts_at=starts_at, ends_at=ends_at)


def incident(
    status: IncidentStatus = IncidentStatus.OPEN,
    *,
    severity: Severity = Severity.WARNING,
    firing: tuple[str, ...] = (),
    key: str = KEY,
    flap_count: int = 0,
    firing_elsewhere: bool = False,
) -> IncidentState:
    return IncidentState(
        uuid.uuid4(),
        key,
        status,
        severity,
        {"alerts_received": len(firing)},
        set(firing),
        flap_count=flap_count,
        kind=KIND,
        first_seen=T0,
        firing_elsewhere=firing_elsewhere,
    )


def member(
    fingerprint: str, inc: IncidentState, status: AlertStatus = AlertStatus.FIRING, starts_at: datetime = T0
) -> MemberState:
    return MemberState(fingerprint, inc.id, status, starts_at)


def state(
    *incidents: IncidentState, members: tuple[MemberState, ...] = (), reopenable: tuple[IncidentState, ...] = ()
) -> State:
    """What the store reads: the active incident of each key, the reopenable ones, every incident named."""
    every = [*incidents, *reopenable]
    return State(
        active={i.incident_key: i for i in incidents if i.status != IncidentStatus.RESOLVED},
        reopenable={i.incident_key: i for i in reopenable},
        incidents={i.id: i for i in every},
        members={m.fingerprint: m for m in members},
    )


def run(
    alerts: list[Alert],
    st: State | None = None,
    *,
    severity: dict[str, Severity] | None = None,
    keys: dict[str, str] | None = None,
    **kwargs: Any,
) -> Plan:
    """Plan `alerts`, each mapped to KEY (or to `keys[fingerprint]`'s route) with its given severity."""
    severity, keys = severity or {}, keys or {}
    mappings = {
        a.fingerprint: Mapping(
            keys.get(a.fingerprint, ROUTE), KIND, severity.get(a.fingerprint, Severity.WARNING), "team-a", "default"
        )
        for a in alerts
    }
    return plan(alerts, mappings, st or state(), NOW, **kwargs)


def outcomes(p: Plan) -> dict[str, int]:
    return {name: n for name, n in p.outcomes.items() if n}


def event_types(p: Plan) -> list[str]:
    return [e.type for e in p.events]


def unchanged(p: Plan) -> None:
    """The plan writes nothing: no incident, change, member or event."""
    assert (p.new_incidents, p.changes, p.members, p.events, p.actions) == ([], {}, [], [], {})


# --- firing: open, join, reopen ------------------------------------------------------------------


def test_a_firing_alert_of_a_new_key_opens_an_incident_with_its_evidence() -> None:
    a = alert("a", annotations={"summary": "p99 over 2s", "runbook": "https://runbooks/x", "other": "x"})
    p = run([a], external_url="http://am-1:9093", owner_snapshot=lambda name: {"name": name, "targets": []})
    [ni] = p.new_incidents
    assert (ni.incident_key, ni.route, ni.kind, ni.severity, ni.mapping_rule) == (
        KEY,
        ROUTE,
        KIND,
        "warning",
        "default",
    )
    assert ni.owner == {"name": "team-a", "targets": []}
    assert ni.metadata == {
        "alerts_received": 1,
        "summary": "p99 over 2s",
        "runbook_url": "https://runbooks/x",
        "generator_url": "http://prometheus/graph",
        "external_url": "http://am-1:9093",
        "last_alertname": "Alert-a",
    }
    assert [(m.incident_id, m.alert, m.status) for m in p.members] == [(ni.id, a, AlertStatus.FIRING)]
    assert event_types(p) == ["opened", "alert_fired"]
    assert p.events[0].detail == {
        "route": ROUTE,
        "kind": KIND,
        "severity": "warning",
        "rule": "default",
        "owner": "team-a",
    }
    assert p.summary() == [{"id": str(ni.id), "incident_key": KEY, "action": "opened"}]
    assert outcomes(p) == {Outcome.NEW: 1}
    assert p.changes == {}


def test_alerts_of_one_new_key_open_one_incident_at_their_highest_severity() -> None:
    p = run([alert("a"), alert("b"), alert("c")], severity={"b": Severity.CRITICAL})
    [ni] = p.new_incidents
    assert ni.severity == Severity.CRITICAL
    assert ni.metadata["alerts_received"] == 3
    assert {m.incident_id for m in p.members} == {ni.id} and len(p.members) == 3
    assert event_types(p) == ["opened", "alert_fired", "alert_fired", "alert_fired"]  # no severity_raised
    assert outcomes(p) == {Outcome.NEW: 3}


def test_alerts_of_different_keys_open_different_incidents() -> None:
    p = run([alert("a"), alert("b")], keys={"b": "GET /cart"})
    assert sorted(ni.incident_key for ni in p.new_incidents) == ["GET /cart::latency", KEY]
    assert sorted(a["action"] for a in p.summary()) == ["opened", "opened"]


def test_a_firing_alert_joins_the_active_incident_of_its_key() -> None:
    inc = incident(IncidentStatus.ACKNOWLEDGED, firing=("a",))
    p = run([alert("b")], state(inc, members=(member("a", inc),)))
    assert p.new_incidents == []
    ch = p.changes[inc.id]
    assert (ch.status, ch.severity, ch.flap_count) == (IncidentStatus.ACKNOWLEDGED, Severity.WARNING, 0)
    assert not (ch.resolved or ch.reopened or ch.severity_raised or ch.rearm or ch.clear_ack)
    assert ch.metadata["alerts_received"] == 2 and ch.metadata["last_alertname"] == "Alert-b"
    assert [(m.incident_id, m.status) for m in p.members] == [(inc.id, AlertStatus.FIRING)]
    assert event_types(p) == ["alert_fired"]
    assert p.actions == {inc.id: Action.UPDATED}
    assert outcomes(p) == {Outcome.NEW: 1}


def test_a_new_instance_of_a_known_alert_is_an_update_of_its_incident() -> None:
    inc = incident(firing=("a",))
    later = T0 + timedelta(hours=1)
    p = run([alert("a", starts_at=later)], state(inc, members=(member("a", inc),)))
    assert [(m.incident_id, m.alert.starts_at) for m in p.members] == [(inc.id, later)]
    assert p.actions == {inc.id: Action.UPDATED}
    assert outcomes(p) == {Outcome.UPDATED: 1}


def test_a_firing_alert_reopens_the_incident_resolved_within_the_window() -> None:
    old = incident(IncidentStatus.RESOLVED, flap_count=2)
    p = run([alert("a"), alert("b")], state(reopenable=(old,)))
    assert p.new_incidents == []
    ch = p.changes[old.id]
    assert (ch.status, ch.flap_count, ch.reopened, ch.resolved, ch.rearm, ch.clear_ack) == (
        IncidentStatus.OPEN,
        3,
        True,
        False,
        True,
        True,
    )
    assert event_types(p) == ["reopened", "alert_fired", "alert_fired"]  # the second alert joins, no second reopen
    assert p.events[0].detail == {"flap_count": 3}
    assert p.actions == {old.id: Action.REOPENED}
    assert outcomes(p) == {Outcome.NEW: 2}


def test_without_an_active_or_reopenable_incident_a_new_one_opens() -> None:
    """An incident resolved outside the window is not in the state's reopenable ones: a new incident opens."""
    long_ago = incident(IncidentStatus.RESOLVED)
    p = run([alert("a")], State(active={}, reopenable={}, incidents={long_ago.id: long_ago}, members={}))
    [ni] = p.new_incidents
    assert ni.id != long_ago.id and p.changes == {}


# --- severity only rises -------------------------------------------------------------------------


def test_severity_never_drops_while_the_incident_is_active() -> None:
    inc = incident(severity=Severity.CRITICAL, firing=("a",))
    p = run([alert("b")], state(inc, members=(member("a", inc),)), severity={"b": Severity.WARNING})
    ch = p.changes[inc.id]
    assert ch.severity == Severity.CRITICAL and not ch.severity_raised
    assert event_types(p) == ["alert_fired"]


def test_severity_rises_to_critical_and_rearms_escalation() -> None:
    inc = incident(firing=("a",))
    p = run([alert("b")], state(inc, members=(member("a", inc),)), severity={"b": Severity.CRITICAL})
    ch = p.changes[inc.id]
    assert (ch.severity, ch.severity_raised, ch.rearm, ch.clear_ack, ch.status) == (
        Severity.CRITICAL,
        True,
        True,
        False,
        IncidentStatus.OPEN,
    )
    assert event_types(p) == ["severity_raised", "alert_fired"]
    assert p.events[0].detail == {"from": "warning", "to": "critical"}


def test_rising_to_critical_clears_an_acknowledgement() -> None:
    inc = incident(IncidentStatus.ACKNOWLEDGED, firing=("a",))
    p = run([alert("b")], state(inc, members=(member("a", inc),)), severity={"b": Severity.CRITICAL})
    ch = p.changes[inc.id]
    assert (ch.status, ch.clear_ack, ch.rearm) == (IncidentStatus.OPEN, True, True)
    assert event_types(p) == ["severity_raised", "unacknowledged", "alert_fired"]
    assert p.events[1].detail == {"reason": "severity raised to critical"}


def test_a_reopened_incident_rising_to_critical_is_rearmed_once() -> None:
    old = incident(IncidentStatus.RESOLVED)
    p = run([alert("a"), alert("b")], state(reopenable=(old,)), severity={"b": Severity.CRITICAL})
    ch = p.changes[old.id]
    assert (ch.severity, ch.severity_raised, ch.rearm, ch.status) == (
        Severity.CRITICAL,
        True,
        True,
        IncidentStatus.OPEN,
    )
    assert event_types(p) == ["reopened", "alert_fired", "severity_raised", "alert_fired"]


# --- duplicates and stale firings ----------------------------------------------------------------


def test_a_duplicate_firing_changes_only_receive_counts() -> None:
    inc = incident(IncidentStatus.SILENCED, firing=("a",))
    a = alert("a")
    p = run([a], state(inc, members=(member("a", inc),)))
    assert [(m.incident_id, m.alert, m.status) for m in p.members] == [(inc.id, a, AlertStatus.FIRING)]
    assert p.changes == {
        inc.id: IncidentChange(
            inc.id,
            Severity.WARNING,
            IncidentStatus.SILENCED,
            {
                **inc.metadata,
                "alerts_received": 2,
                "last_alertname": "Alert-a",
                "generator_url": "http://prometheus/graph",
            },
            0,
            kind=KIND,
            first_seen=T0,
        )
    }
    assert p.events == [] and p.new_incidents == []
    assert p.touched == [inc.id]  # its last_seen moves
    assert outcomes(p) == {Outcome.DUPLICATE: 1}


def test_a_duplicate_resolve_changes_only_its_receive_count() -> None:
    inc = incident(firing=("a",))
    st = state(inc, members=(member("a", inc), member("b", inc, AlertStatus.RESOLVED)))
    p = run([resolved("b", ends_at=None)], st)
    assert [(m.incident_id, m.status, m.ends_at) for m in p.members] == [(inc.id, AlertStatus.RESOLVED, NOW)]
    assert p.events == [] and p.changes == {}
    assert p.touched == [inc.id]
    assert outcomes(p) == {Outcome.DUPLICATE: 1}


def test_a_firing_for_an_instance_already_resolved_is_stale() -> None:
    """The slower HA peer sends "firing" with the same startsAt after the first peer's "resolved"."""
    inc = incident(firing=("b",))
    p = run([alert("a")], state(inc, members=(member("a", inc, AlertStatus.RESOLVED), member("b", inc))))
    unchanged(p)
    assert outcomes(p) == {Outcome.STALE: 1}
    assert p.alert_outcomes[0][1] == Outcome.STALE


def test_a_firing_older_than_the_known_instance_is_stale() -> None:
    inc = incident(firing=("a",))
    p = run([alert("a", starts_at=T0 - timedelta(hours=1))], state(inc, members=(member("a", inc),)))
    unchanged(p)
    assert outcomes(p) == {Outcome.STALE: 1}


def test_instances_of_an_incident_resolved_by_hand_never_reopen_it() -> None:
    """Alertmanager keeps re-sending the firing alerts of an incident someone resolved on the page: the person's
    decision stands, even within the reopen window."""
    by_hand = incident(IncidentStatus.RESOLVED, firing=("a", "b"))
    st = state(members=(member("a", by_hand), member("b", by_hand)), reopenable=(by_hand,))
    p = run([alert("a"), alert("b")], st)
    unchanged(p)
    assert outcomes(p) == {Outcome.STALE: 2}


def test_a_new_instance_after_a_resolve_by_hand_reopens_within_the_window() -> None:
    by_hand = incident(IncidentStatus.RESOLVED, firing=("a",))
    st = state(members=(member("a", by_hand),), reopenable=(by_hand,))
    p = run([alert("a", starts_at=T0 + timedelta(minutes=8))], st)
    assert p.actions == {by_hand.id: Action.REOPENED}
    assert p.changes[by_hand.id].status == IncidentStatus.OPEN
    assert outcomes(p) == {Outcome.UPDATED: 1}


# --- resolves ------------------------------------------------------------------------------------


def test_a_resolve_marks_its_member_and_leaves_the_incident_open_while_another_fires() -> None:
    inc = incident(firing=("a", "b"))
    ends = T0 + timedelta(minutes=5)
    p = run([resolved("b", ends_at=ends)], state(inc, members=(member("a", inc), member("b", inc))))
    assert [(m.incident_id, m.status, m.ends_at) for m in p.members] == [(inc.id, AlertStatus.RESOLVED, ends)]
    assert event_types(p) == ["alert_resolved"]
    assert p.events[0].detail["ends_at"] == ends.isoformat()
    ch = p.changes[inc.id]
    assert ch.status == IncidentStatus.OPEN and not ch.resolved
    assert p.actions == {inc.id: Action.UPDATED}
    assert outcomes(p) == {Outcome.UPDATED: 1}


def test_a_member_firing_outside_the_batch_keeps_the_incident_open() -> None:
    """The store names only the batch's firing members and says whether another fires."""
    inc = incident(firing=("a",), firing_elsewhere=True)
    p = run([resolved("a")], state(inc, members=(member("a", inc),)))
    assert p.changes[inc.id].status == IncidentStatus.OPEN and not p.changes[inc.id].resolved
    assert p.actions == {inc.id: Action.UPDATED}
    alone = incident(firing=("a",))
    assert run([resolved("a")], state(alone, members=(member("a", alone),))).changes[alone.id].resolved


def test_a_resolve_without_ends_at_ends_now() -> None:
    inc = incident(firing=("a", "b"))
    p = run([resolved("a", ends_at=None)], state(inc, members=(member("a", inc), member("b", inc))))
    assert p.members[0].ends_at == NOW
    assert p.events[0].detail["ends_at"] == NOW.isoformat()


def test_the_incident_resolves_when_no_member_fires() -> None:
    inc = incident(IncidentStatus.ACKNOWLEDGED, firing=("a",))
    p = run([resolved("a")], state(inc, members=(member("a", inc), member("b", inc, AlertStatus.RESOLVED))))
    ch = p.changes[inc.id]
    assert (ch.status, ch.resolved) == (IncidentStatus.RESOLVED, True)
    assert event_types(p) == ["alert_resolved", "resolved"]
    assert p.events[1].detail == {"reason": "all alerts resolved"}
    assert p.summary() == [{"id": str(inc.id), "incident_key": KEY, "action": "resolved"}]


def test_resolving_one_member_and_firing_another_in_one_webhook_never_flaps() -> None:
    """Firing alerts are planned first, whatever their order in the payload."""
    inc = incident(firing=("a",))
    p = run([resolved("a"), alert("b")], state(inc, members=(member("a", inc),)))
    ch = p.changes[inc.id]
    assert ch.status == IncidentStatus.OPEN and not ch.resolved
    assert event_types(p) == ["alert_fired", "alert_resolved"]
    assert outcomes(p) == {Outcome.NEW: 1, Outcome.UPDATED: 1}


def test_each_alert_acts_on_its_own_member_whatever_the_others_say() -> None:
    """Per alert, never per group: one webhook resolves one incident and keeps another open."""
    one, two = incident(firing=("a",)), incident(firing=("b",), key="GET /cart::latency")
    p = run(
        [resolved("a"), alert("b")],
        state(one, two, members=(member("a", one), member("b", two))),
        keys={"b": "GET /cart"},
    )
    assert p.actions == {one.id: Action.RESOLVED}
    assert p.touched == [two.id, one.id]
    assert outcomes(p) == {Outcome.DUPLICATE: 1, Outcome.UPDATED: 1}


def test_absence_is_never_a_resolve() -> None:
    inc = incident(firing=("a", "b"))
    p = run([alert("a")], state(inc, members=(member("a", inc), member("b", inc))))
    assert p.changes[inc.id].status == IncidentStatus.OPEN
    assert [m.alert.fingerprint for m in p.members] == ["a"]
    assert "resolved" not in event_types(p)


def test_a_resolve_for_nothing_known_is_stale() -> None:
    inc = incident(firing=("a",))
    gone = MemberState("c", uuid.uuid4(), AlertStatus.FIRING, T0)  # its incident is not in the state
    st = state(inc, members=(member("a", inc), gone))
    p = run([resolved("never-seen"), resolved("a", starts_at=T0 - timedelta(hours=1)), resolved("c")], st)
    unchanged(p)
    assert outcomes(p) == {Outcome.STALE: 3}


def test_a_resolve_for_an_incident_resolved_by_hand_marks_only_the_member() -> None:
    by_hand = incident(IncidentStatus.RESOLVED, firing=("a",))
    p = run([resolved("a")], state(members=(member("a", by_hand),), reopenable=(by_hand,)))
    assert [(m.incident_id, m.status) for m in p.members] == [(by_hand.id, AlertStatus.RESOLVED)]
    assert event_types(p) == ["alert_resolved"]
    assert p.changes == {} and p.actions == {}
    assert outcomes(p) == {Outcome.UPDATED: 1}


# --- the plan as a whole -------------------------------------------------------------------------


def test_the_state_given_is_left_unchanged() -> None:
    """plan() decides; it does not write, not even into the state it was given."""
    acked = incident(IncidentStatus.ACKNOWLEDGED, firing=("a", "b"))
    old = incident(IncidentStatus.RESOLVED, key="GET /cart::latency")
    st = state(acked, members=(member("a", acked), member("b", acked)), reopenable=(old,))
    before = copy.deepcopy(st)
    run([resolved("a"), resolved("b"), alert("c")], st, keys={"c": "GET /cart"}, severity={"c": Severity.CRITICAL})
    run([alert("d")], st, severity={"d": Severity.CRITICAL})
    assert st == before


def test_the_sender_is_the_actor_of_every_event() -> None:
    inc = incident(IncidentStatus.ACKNOWLEDGED, firing=("a",))
    st = state(inc, members=(member("a", inc),))
    assert {e.actor for e in run([alert("b")], st, severity={"b": Severity.CRITICAL}).events} == {"alertmanager"}
    p = run([alert("b"), resolved("a")], st, severity={"b": Severity.CRITICAL}, actor="grafana")
    assert event_types(p) == ["severity_raised", "unacknowledged", "alert_fired", "alert_resolved"]
    assert {e.actor for e in p.events} == {"grafana"}


def test_a_plan_counts_every_outcome_and_serialises() -> None:
    p = run([])
    assert p.outcomes == {o: 0 for o in Outcome} and set(p.outcomes) == {o.value for o in Outcome}
    p = run([alert("a")])
    assert json.loads(json.dumps({"incidents": p.summary(), "alerts": p.outcomes}))["alerts"]["new"] == 1


def test_dedupe_keeps_the_latest_instance_and_a_resolve_over_its_firing() -> None:
    later = T0 + timedelta(minutes=1)
    kept = dedupe([alert("a"), resolved("a"), alert("b", starts_at=later), resolved("b"), alert("c")])
    assert [(a.fingerprint, a.status, a.starts_at) for a in kept] == [
        ("a", AlertStatus.RESOLVED, T0),
        ("b", AlertStatus.FIRING, later),
        ("c", AlertStatus.FIRING, T0),
    ]


def test_merged_plans_of_one_webhook_keep_the_strongest_action_and_every_flag() -> None:
    """The store plans a webhook with very many keys in several transactions and merges their plans."""
    acked = incident(IncidentStatus.ACKNOWLEDGED, firing=("a",))
    members = (member("a", acked), member("b", acked, AlertStatus.RESOLVED, T0 - timedelta(hours=1)))
    first = run([alert("b")], state(acked, members=members), severity={"b": Severity.CRITICAL})
    # the second transaction reads what the first committed: b fires too
    after_first = replace(acked, status=IncidentStatus.OPEN, severity=Severity.CRITICAL, firing={"a", "b"})
    second = run(
        [resolved("a"), alert("x")],
        state(after_first, members=(*members[:1], member("b", acked))),
        keys={"x": "GET /cart"},
    )
    first.merge(second)
    ch = first.changes[acked.id]
    assert (ch.severity_raised, ch.clear_ack, ch.rearm) == (True, True, True)  # from the first
    assert ch.metadata == second.changes[acked.id].metadata  # the later state
    assert first.actions[acked.id] == Action.UPDATED
    assert [ni.incident_key for ni in first.new_incidents] == ["GET /cart::latency"]
    assert outcomes(first) == {Outcome.UPDATED: 2, Outcome.NEW: 1}
    assert len(first.members) == 3 and len(first.alert_outcomes) == 3
    assert set(first.keys) == {acked.id, first.new_incidents[0].id}


# --- a resolve we inferred is not a fact ---------------------------------------------------------------


def inferred(fingerprint: str, inc: IncidentState, resolver: str) -> MemberState:
    """A member whose instance the stale timer or reconciliation resolved (no sender said so)."""
    return MemberState(fingerprint, inc.id, AlertStatus.RESOLVED, T0, resolver)


def test_an_instance_resolved_as_stale_that_fires_again_reopens_its_incident_within_the_window() -> None:
    stale = incident(IncidentStatus.RESOLVED)
    p = run([alert("a")], state(members=(inferred("a", stale, STALE_RESOLVER),), reopenable=(stale,)))
    assert p.actions == {stale.id: Action.REOPENED}
    ch = p.changes[stale.id]
    assert (ch.status, ch.reopened, ch.rearm) == (IncidentStatus.OPEN, True, True)  # rearm: it pages again
    assert event_types(p) == ["reopened", "alert_fired"]
    assert p.events[1].detail["after_inferred_resolve"] == STALE_RESOLVER
    assert [(m.status, m.resolved_by) for m in p.members] == [(AlertStatus.FIRING, None)]
    assert outcomes(p) == {Outcome.UPDATED: 1}


def test_an_instance_resolved_by_reconciliation_that_fires_again_opens_a_new_incident_past_the_window() -> None:
    old = incident(IncidentStatus.RESOLVED)
    p = run([alert("a")], state(old, members=(inferred("a", old, RECONCILER),)))
    [ni] = p.new_incidents
    assert ni.incident_key == KEY and ni.id != old.id
    assert event_types(p) == ["opened", "alert_fired"]
    assert outcomes(p) == {Outcome.UPDATED: 1}


def test_an_instance_resolved_by_reconciliation_rejoins_its_incident_while_others_fire() -> None:
    inc = incident(firing=("b",))
    p = run([alert("a")], state(inc, members=(inferred("a", inc, RECONCILER), member("b", inc))))
    assert p.actions == {inc.id: Action.UPDATED}
    assert [(m.incident_id, m.status) for m in p.members] == [(inc.id, AlertStatus.FIRING)]


def test_a_resolve_alertmanager_sent_stays_final_for_its_instance() -> None:
    """The same state with the resolve a sender sent: the late firing is an HA copy, stale."""
    inc = incident(IncidentStatus.RESOLVED)
    sent = MemberState("a", inc.id, AlertStatus.RESOLVED, T0, "alertmanager")
    p = run([alert("a")], state(members=(sent,), reopenable=(inc,)))
    unchanged(p)
    assert outcomes(p) == {Outcome.STALE: 1}


def test_an_incident_resolved_by_a_person_stays_resolved_whatever_resolved_its_members() -> None:
    by_hand = incident(IncidentStatus.RESOLVED, firing=("a",))
    p = run([alert("a")], state(members=(member("a", by_hand),), reopenable=(by_hand,)))
    unchanged(p)


def test_resolves_record_who_resolved_and_a_senders_resolve_turns_an_inferred_one_into_a_fact() -> None:
    inc = incident(firing=("a", "b"))
    st = state(inc, members=(member("a", inc), inferred("b", inc, RECONCILER)))
    p = run([resolved("a"), resolved("b")], st, actor="alertmanager")
    assert sorted((m.alert.fingerprint, m.resolved_by) for m in p.members) == [
        ("a", "alertmanager"),
        ("b", "alertmanager"),
    ]
    assert p.changes[inc.id].resolved_by == "alertmanager"
    # reconciliation repeating a resolve never overwrites the sender's
    inc = incident(firing=("b",))
    st = state(inc, members=(MemberState("a", inc.id, AlertStatus.RESOLVED, T0, "alertmanager"), member("b", inc)))
    p = run([resolved("a"), resolved("b")], st, actor=RECONCILER, event_detail={"peers": ["http://am-0:9093"]})
    assert sorted((m.alert.fingerprint, m.resolved_by) for m in p.members) == [("a", "alertmanager"), ("b", RECONCILER)]
    assert [(e.type, e.actor, e.detail.get("peers")) for e in p.events] == [
        ("alert_resolved", RECONCILER, ["http://am-0:9093"]),
        ("resolved", RECONCILER, None),
    ]
    assert p.changes[inc.id].resolved_by == RECONCILER
