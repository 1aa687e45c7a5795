"""Correlation: what one webhook does to incidents, decided as a pure function of the current state.

The store reads the state of every incident and member the payload touches (under per-key locks),
`plan()` decides, and the store writes the plan back in one set-based statement. Keeping the decision
here, free of I/O, is what lets every rule below be tested directly:

- act per alert, keyed by fingerprint; an instance is (fingerprint, startsAt); never the group status;
- a firing instance joins the active incident of its key, reopens one resolved within the reopen
  window, or opens a new one; severity only rises while an incident is active;
- a resolved instance resolves its member; when no member fires, the incident resolves;
- duplicates change only receive counts and last_seen; a firing for an instance already resolved
  (or older than the one we know) is stale and changes nothing;
- an alert missing from a payload is never a resolve.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .model import Alert
from .rules import Mapping, severity_rank

ACTOR = "alertmanager"
EVIDENCE_ANNOTATIONS = {
    "summary": "summary",
    "description": "description",
    "runbook_url": "runbook_url",
    "runbook": "runbook_url",
    "sentry_url": "sentry_url",
    "dashboard_url": "dashboard_url",
}
OUTCOMES = ("new", "updated", "duplicate", "stale", "invalid")
# what a webhook did to an incident, weakest first: the strongest is reported
_ACTIONS = ("unchanged", "updated", "resolved", "reopened", "opened")


@dataclass
class IncidentState:
    id: uuid.UUID
    incident_key: str
    status: str
    severity: str
    metadata: dict[str, Any]
    firing: set[str]
    flap_count: int = 0
    resolved_at: datetime | None = None
    kind: str = ""
    first_seen: datetime | None = None


@dataclass(frozen=True)
class MemberState:
    fingerprint: str
    incident_id: uuid.UUID
    status: str
    starts_at: datetime


@dataclass
class State:
    active: dict[str, IncidentState]  # by incident_key
    reopenable: dict[str, IncidentState]  # latest resolved within the reopen window, by incident_key
    incidents: dict[uuid.UUID, IncidentState]  # every incident named above or by a member, by id
    members: dict[str, MemberState]  # the latest instance of each fingerprint


@dataclass
class NewIncident:
    id: uuid.UUID
    incident_key: str
    route: str
    kind: str
    severity: str
    owner: dict[str, Any]
    mapping_rule: str
    metadata: dict[str, Any]


@dataclass
class IncidentChange:
    id: uuid.UUID
    severity: str
    status: str
    metadata: dict[str, Any]
    flap_count: int
    kind: str = ""
    first_seen: datetime | None = None
    resolved: bool = False
    reopened: bool = False
    severity_raised: bool = False
    rearm: bool = False  # restart escalation from level 0 in a new cycle
    clear_ack: bool = False


@dataclass(frozen=True)
class MemberWrite:
    incident_id: uuid.UUID
    alert: Alert
    status: str
    ends_at: datetime | None


@dataclass(frozen=True)
class Event:
    incident_id: uuid.UUID
    type: str
    detail: dict[str, Any]
    actor: str = ACTOR


@dataclass
class Plan:
    new_incidents: list[NewIncident] = field(default_factory=list)
    changes: dict[uuid.UUID, IncidentChange] = field(default_factory=dict)
    members: list[MemberWrite] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    alert_outcomes: list[tuple[Alert, str]] = field(default_factory=list)
    actions: dict[uuid.UUID, str] = field(default_factory=dict)
    keys: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def touched(self) -> list[uuid.UUID]:
        return list(self.keys)

    def merge(self, later: Plan) -> None:
        """Add the plan of a later transaction of the same webhook (the store cuts a webhook with very many
        keys into several). Only a member's alert can touch an incident of another chunk, so an incident in
        both was changed twice: keep the later state and every flag either set."""
        self.new_incidents.extend(later.new_incidents)
        for inc_id, ch in later.changes.items():
            before = self.changes.get(inc_id)
            if before is not None:
                for flag in ("resolved", "reopened", "severity_raised", "rearm", "clear_ack"):
                    setattr(ch, flag, getattr(ch, flag) or getattr(before, flag))
            self.changes[inc_id] = ch
        self.members.extend(later.members)
        self.events.extend(later.events)
        for name, n in later.outcomes.items():
            self.outcomes[name] = self.outcomes.get(name, 0) + n
        self.alert_outcomes.extend(later.alert_outcomes)
        for inc_id, action in later.actions.items():
            if _ACTIONS.index(action) > _ACTIONS.index(self.actions.get(inc_id, "unchanged")):
                self.actions[inc_id] = action
        self.keys.update(later.keys)

    def summary(self) -> list[dict[str, str]]:
        return [{"id": str(i), "incident_key": self.keys[i], "action": a} for i, a in self.actions.items()]


def dedupe(alerts: Iterable[Alert]) -> list[Alert]:
    """One alert per fingerprint: the latest instance, and for one instance its resolve over its firing."""
    best: dict[str, Alert] = {}
    for a in alerts:
        cur = best.get(a.fingerprint)
        if cur is None or (a.starts_at, a.status == "resolved") >= (cur.starts_at, cur.status == "resolved"):
            best[a.fingerprint] = a
    return list(best.values())


def plan(
    alerts: list[Alert],
    mappings: dict[str, Mapping],
    state: State,
    now: datetime,
    *,
    external_url: str = "",
    owner_snapshot: Callable[[str], dict[str, Any]] = lambda name: {"name": name},
) -> Plan:
    """Decide what `alerts` (deduplicated, mapped by fingerprint) do to the incidents in `state`."""
    p = Plan()
    changes = p.changes

    def change(inc: IncidentState) -> IncidentChange:
        ch = changes.get(inc.id)
        if ch is None:
            ch = IncidentChange(inc.id, inc.severity, inc.status, dict(inc.metadata), inc.flap_count,
                                kind=inc.kind, first_seen=inc.first_seen)
            changes[inc.id] = ch
        return ch

    def touch(inc_id: uuid.UUID, key: str, action: str) -> None:
        p.keys[inc_id] = key
        if _ACTIONS.index(action) > _ACTIONS.index(p.actions.get(inc_id, "unchanged")):
            p.actions[inc_id] = action

    def evidence(metadata: dict[str, Any], alert: Alert) -> None:
        for ann, name in EVIDENCE_ANNOTATIONS.items():
            if alert.annotations.get(ann):
                metadata[name] = alert.annotations[ann]
        if alert.generator_url:
            metadata["generator_url"] = alert.generator_url
        if external_url:
            metadata["external_url"] = external_url
        metadata["alerts_received"] = int(metadata.get("alerts_received", 0)) + 1
        metadata["last_alertname"] = alert.labels.get("alertname", "")

    def outcome(alert: Alert, name: str) -> None:
        p.outcomes[name] += 1
        p.alert_outcomes.append((alert, name))

    new_by_key: dict[str, NewIncident] = {}
    firing_new: dict[uuid.UUID, set[str]] = {}
    # Firing first, so that a payload resolving one member and firing another never flaps the incident.
    ordered = sorted(alerts, key=lambda a: a.status == "resolved")
    for alert in ordered:
        m = state.members.get(alert.fingerprint)
        mapping = mappings[alert.fingerprint]
        if alert.status == "firing":
            if m is not None and alert.starts_at <= m.starts_at:
                inc = state.incidents.get(m.incident_id)
                if (
                    alert.starts_at == m.starts_at
                    and m.status == "firing"
                    and inc is not None
                    and inc.status != "resolved"
                ):
                    outcome(alert, "duplicate")
                    p.members.append(MemberWrite(inc.id, alert, "firing", alert.ends_at))
                    evidence(change(inc).metadata, alert)
                    touch(inc.id, inc.incident_key, "unchanged")
                else:
                    # Already resolved (HA peers send exactly this), an older instance, or an instance
                    # whose incident was closed by hand or as stale: it never reopens anything.
                    outcome(alert, "stale")
                continue

            key = mapping.incident_key
            target: IncidentState | None = state.active.get(key)
            if target is None and key in new_by_key:
                ni = new_by_key[key]
                if severity_rank(mapping.severity) > severity_rank(ni.severity):
                    ni.severity = mapping.severity
                evidence(ni.metadata, alert)
                firing_new[ni.id].add(alert.fingerprint)
                p.members.append(MemberWrite(ni.id, alert, "firing", alert.ends_at))
                p.events.append(Event(ni.id, "alert_fired", _alert_detail(alert)))
                outcome(alert, "new" if m is None else "updated")
                continue
            if target is None:
                reopen = state.reopenable.get(key)
                if reopen is not None:
                    ch = change(reopen)
                    ch.status, ch.reopened, ch.resolved = "open", True, False
                    ch.rearm = ch.clear_ack = True
                    ch.flap_count += 1
                    reopen.status = "open"
                    state.active[key] = reopen
                    target = reopen
                    p.events.append(Event(reopen.id, "reopened", {"flap_count": ch.flap_count}))
                    touch(reopen.id, key, "reopened")
            if target is None:
                ni = NewIncident(
                    id=uuid.uuid4(),
                    incident_key=key,
                    route=mapping.route,
                    kind=mapping.kind,
                    severity=mapping.severity,
                    owner=owner_snapshot(mapping.owner),
                    mapping_rule=mapping.rule,
                    metadata={"alerts_received": 0},
                )
                evidence(ni.metadata, alert)
                new_by_key[key] = ni
                firing_new[ni.id] = {alert.fingerprint}
                p.new_incidents.append(ni)
                p.members.append(MemberWrite(ni.id, alert, "firing", alert.ends_at))
                p.events.append(
                    Event(ni.id, "opened", {"route": ni.route, "kind": ni.kind, "severity": ni.severity,
                                            "rule": ni.mapping_rule, "owner": mapping.owner})
                )
                p.events.append(Event(ni.id, "alert_fired", _alert_detail(alert)))
                touch(ni.id, key, "opened")
                outcome(alert, "new" if m is None else "updated")
                continue

            ch = change(target)
            evidence(ch.metadata, alert)
            if severity_rank(mapping.severity) > severity_rank(ch.severity):
                p.events.append(Event(target.id, "severity_raised", {"from": ch.severity, "to": mapping.severity}))
                ch.severity = mapping.severity
                ch.severity_raised = True
                if ch.severity == "critical" and not ch.rearm:
                    # re-arm on the critical policy, even when acknowledged
                    ch.rearm = True
                    if ch.status == "acknowledged":
                        ch.status, ch.clear_ack = "open", True
                        target.status = "open"
                        p.events.append(Event(target.id, "unacknowledged", {"reason": "severity raised to critical"}))
            target.firing.add(alert.fingerprint)
            p.members.append(MemberWrite(target.id, alert, "firing", alert.ends_at))
            p.events.append(Event(target.id, "alert_fired", _alert_detail(alert)))
            touch(target.id, key, "updated")
            outcome(alert, "new" if m is None else "updated")
            continue

        # resolved
        if m is None or alert.starts_at < m.starts_at:
            outcome(alert, "stale")  # never seen firing, or an older instance: nothing to resolve
            continue
        inc = state.incidents.get(m.incident_id)
        if inc is None:
            outcome(alert, "stale")
            continue
        if m.status == "resolved" and alert.starts_at == m.starts_at:
            outcome(alert, "duplicate")
            p.members.append(MemberWrite(inc.id, alert, "resolved", alert.ends_at or now))
            if inc.status != "resolved":
                touch(inc.id, inc.incident_key, "unchanged")
            continue
        p.members.append(MemberWrite(inc.id, alert, "resolved", alert.ends_at or now))
        p.events.append(Event(inc.id, "alert_resolved", _alert_detail(alert, ends_at=alert.ends_at or now)))
        inc.firing.discard(alert.fingerprint)
        if inc.id in firing_new:
            firing_new[inc.id].discard(alert.fingerprint)
        outcome(alert, "updated")
        if inc.status != "resolved":
            change(inc)
            touch(inc.id, inc.incident_key, "updated")

    for inc_id in list(p.keys):
        inc = state.incidents.get(inc_id)
        if inc is None or inc.status == "resolved" or inc.firing:
            continue
        ch = change(inc)
        ch.status, ch.resolved = "resolved", True
        p.events.append(Event(inc_id, "resolved", {"reason": "all alerts resolved"}))
        touch(inc_id, inc.incident_key, "resolved")
    return p


def _alert_detail(alert: Alert, ends_at: datetime | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "fingerprint": alert.fingerprint,
        "alertname": alert.labels.get("alertname", ""),
        "starts_at": alert.starts_at.isoformat(),
    }
    if ends_at is not None:
        detail["ends_at"] = ends_at.isoformat()
    return detail


def reopen_cutoff(now: datetime, window: timedelta) -> datetime:
    return now - window
