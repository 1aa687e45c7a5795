"""Correlation: what one webhook does to incidents, decided as a pure function of the current state.

The store reads the state of every incident and member the payload touches (under per-key locks),
`plan()` decides, and the store writes the plan back in one set-based statement. Keeping the decision
here, free of I/O and of changes to the state it is given, is what lets every rule below be tested
directly (tests/unit/test_planner.py). Each rule is one method of `_Planner`, named after it:

- act per alert, keyed by fingerprint; an instance is (fingerprint, startsAt); never the group status;
- a firing instance joins the active incident of its key (`_join_active`, or `_join_opened` for one this
  webhook opened), reopens one resolved within the reopen window (`_reopen`), or opens a new one (`_open`);
  severity only rises while an incident is active (`_raise_severity`);
- a resolved instance resolves its member (`_resolve`); when no member fires, the incident resolves
  (`_resolve_quiet_incidents`);
- duplicates change only receive counts and last_seen; a firing for an instance already resolved
  (or older than the one we know) is stale and changes nothing (`_known_firing`, `_known_resolve`);
- the instances of an incident resolved by hand never reopen it: only a new instance does;
- a resolve we inferred is not a fact (`_refires`): an instance resolved by the stale timer or by
  reconciliation with Alertmanager (`INFERRED_RESOLVERS`) that is reported firing again counts as a new
  instance: it reopens its incident within the reopen window, or opens a new one, and pages. Only a
  sender's resolve, or a person's resolve of the incident, is final for an instance;
- an alert missing from a payload is never a resolve (nothing here looks at what a payload lacks).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from .model import Alert, AlertStatus, IncidentStatus, Outcome, Severity, severity_rank
from .rules import Mapping

ACTOR = "alertmanager"
# who resolved an instance without a sender saying so (incident_alerts.resolved_by): the stale timer (tick_timers)
# and reconciliation (receiver/reconcile.py, whose actor this is)
STALE_RESOLVER = "stale"
RECONCILER = "reconciler"
INFERRED_RESOLVERS = frozenset({STALE_RESOLVER, RECONCILER})
EVIDENCE_ANNOTATIONS = {
    "summary": "summary",
    "description": "description",
    "runbook_url": "runbook_url",
    "runbook": "runbook_url",
    "sentry_url": "sentry_url",
    "dashboard_url": "dashboard_url",
    # Grafana's per-alert links arrive under these names (receiver/ingest/grafana.py); any sender may use them
    "panel_url": "panel_url",
    "silence_url": "silence_url",
    "image_url": "image_url",
}


class Action(StrEnum):
    """What one webhook did to one incident (the reply's `action`), weakest first: the strongest is reported."""

    UNCHANGED = "unchanged"
    UPDATED = "updated"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    OPENED = "opened"


_ACTION_RANK: dict[str, int] = {a: i for i, a in enumerate(Action)}
_HIGHEST_SEVERITY = max(Severity, key=lambda s: s.rank)


# The members the planner's rules use, read once: an Enum class attribute costs a descriptor call on 3.11, several
# per alert in the rules below. They are the same members, so the plan holds exactly what it held.
_FIRING, _RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
_OPEN, _ACKNOWLEDGED, _INCIDENT_RESOLVED = IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED, IncidentStatus.RESOLVED
_NEW, _UPDATED, _STALE, _DUPLICATE = Outcome.NEW, Outcome.UPDATED, Outcome.STALE, Outcome.DUPLICATE
_UNCHANGED, _ACTION_UPDATED, _ACTION_RESOLVED = Action.UNCHANGED, Action.UPDATED, Action.RESOLVED
_ACTION_REOPENED, _ACTION_OPENED = Action.REOPENED, Action.OPENED
_OUTCOMES = tuple(Outcome)  # iterating the Enum class itself costs ~3 us, once per plan


@dataclass
class IncidentState:
    id: uuid.UUID
    incident_key: str
    status: str  # an IncidentStatus value
    severity: str  # a Severity value
    metadata: dict[str, Any]
    firing: set[str]  # fingerprints of the members that fire (the store names those of the batch's alerts)
    flap_count: int = 0
    resolved_at: datetime | None = None
    kind: str = ""
    first_seen: datetime | None = None
    firing_elsewhere: bool = False  # a member `firing` does not name fires (no alert of the batch is it)


@dataclass(frozen=True)
class MemberState:
    fingerprint: str
    incident_id: uuid.UUID
    status: str  # an AlertStatus value
    starts_at: datetime
    resolved_by: str | None = None  # a sender's name, or one of INFERRED_RESOLVERS


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
    resolved_by: str = ACTOR  # the actor whose resolve resolved it (when `resolved`)


@dataclass(frozen=True)
class MemberWrite:
    incident_id: uuid.UUID
    alert: Alert
    status: str  # an AlertStatus value
    ends_at: datetime | None
    resolved_by: str | None = None  # who resolved the instance (status resolved): see MemberState


@dataclass(frozen=True)
class Event:
    incident_id: uuid.UUID
    type: str
    detail: dict[str, Any]
    actor: str = ACTOR


_FLAGS = ("resolved", "reopened", "severity_raised", "rearm", "clear_ack")


@dataclass
class Plan:
    new_incidents: list[NewIncident] = field(default_factory=list)
    changes: dict[uuid.UUID, IncidentChange] = field(default_factory=dict)
    members: list[MemberWrite] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOMES, 0))
    alert_outcomes: list[tuple[Alert, str]] = field(default_factory=list)
    actions: dict[uuid.UUID, str] = field(default_factory=dict)  # Action values
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
                for flag in _FLAGS:
                    setattr(ch, flag, getattr(ch, flag) or getattr(before, flag))
            self.changes[inc_id] = ch
        self.members.extend(later.members)
        self.events.extend(later.events)
        for name, n in later.outcomes.items():
            self.outcomes[name] = self.outcomes.get(name, 0) + n
        self.alert_outcomes.extend(later.alert_outcomes)
        for inc_id, action in later.actions.items():
            self.act(inc_id, Action(action))
        self.keys.update(later.keys)

    def summary(self) -> list[dict[str, str]]:
        return [{"id": str(i), "incident_key": self.keys[i], "action": a} for i, a in self.actions.items()]

    def act(self, inc_id: uuid.UUID, action: Action) -> None:
        """Record what happened to an incident, keeping the strongest of what this webhook did to it."""
        # ranked through the dict (a member hashes as its string): Action(value) costs a microsecond per alert
        if _ACTION_RANK[action] > _ACTION_RANK[self.actions.get(inc_id, _UNCHANGED)]:
            self.actions[inc_id] = action


def dedupe(alerts: Iterable[Alert]) -> list[Alert]:
    """One alert per fingerprint: the latest instance, and for one instance its resolve over its firing."""
    best: dict[str, Alert] = {}
    for a in alerts:
        cur = best.get(a.fingerprint)
        if cur is None or (a.starts_at, a.status == AlertStatus.RESOLVED) >= (
            cur.starts_at,
            cur.status == AlertStatus.RESOLVED,
        ):
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
    actor: str = ACTOR,
    event_detail: dict[str, Any] | None = None,
) -> Plan:
    """Decide what `alerts` (deduplicated, mapped by fingerprint) do to the incidents in `state`.

    `state` is left as it was: the planner works on its own copy of the incidents it may change. `actor`
    (the sender's name) is the actor of every timeline event the plan holds; `event_detail` is added to the
    detail of each alert's event (reconciliation: the peers asked and what they answered)."""
    planner = _Planner(mappings, _working_copy(state), now, external_url, owner_snapshot, actor, event_detail)
    return planner.run(alerts)


@dataclass(frozen=True)
class Webhook:
    """One webhook (or one key chunk of a huge one) of a batch, with what `plan` takes besides the state."""

    alerts: list[Alert]  # deduplicated
    mappings: dict[str, Mapping]
    now: datetime
    reopen_window_start: datetime
    external_url: str = ""
    owner_snapshot: Callable[[str], dict[str, Any]] = lambda name: {"name": name}
    actor: str = ACTOR
    event_detail: dict[str, Any] | None = None

    @cached_property
    def keys(self) -> frozenset[str]:
        """The incident keys of its alerts: what its transaction locks, what a batch must not share."""
        return frozenset(self.mappings[a.fingerprint].incident_key for a in self.alerts)


def plan_batch(webhooks: Iterable[Webhook], state: State) -> list[Plan]:
    """The plans of several webhooks, in order, each decided against the state the ones before it leave: the
    plans one-by-one ingest would make, each reading what the previous one committed.

    `state` holds everything any of them reads, with reopenable incidents resolved since the earliest
    webhook's reopen window start (each webhook looks only at those within its own window). `state` is left as
    it was: one working copy carries the plans' effects from one webhook to the next."""
    webhooks = list(webhooks)
    work = _working_copy(state)
    if len(webhooks) > 1:
        work.members = dict(work.members)  # _advance replaces members; the caller's dict is left as it was
    plans = []
    for i, w in enumerate(webhooks):
        planner = _Planner(
            w.mappings,
            work,
            w.now,
            w.external_url,
            w.owner_snapshot,
            w.actor,
            w.event_detail,
            reopen_since=w.reopen_window_start,
        )
        p = planner.run(w.alerts)
        if i < len(webhooks) - 1:  # no webhook reads what the last one leaves (~1 us an alert, often alone)
            _advance(work, p, w.now)
        plans.append(p)
    return plans


def _advance(state: State, p: Plan, now: datetime) -> None:
    """Carry a plan's writes into the working state, as the next webhook's read would see them after commit.
    The planner already moved statuses and firing sets as it went; here is what only the written rows say."""
    for ni in p.new_incidents:
        inc = IncidentState(
            ni.id, ni.incident_key, IncidentStatus.OPEN, ni.severity, ni.metadata, set(), kind=ni.kind, first_seen=now
        )
        state.incidents[ni.id] = inc
        state.active[ni.incident_key] = inc
    for inc_id, ch in p.changes.items():
        inc = state.incidents[inc_id]
        inc.severity, inc.status, inc.metadata, inc.flap_count = ch.severity, ch.status, ch.metadata, ch.flap_count
        if ch.status == IncidentStatus.RESOLVED:
            inc.resolved_at = now  # only an active incident resolves
            if state.active.get(inc.incident_key) is inc:
                del state.active[inc.incident_key]
            # the latest resolved incident of its key: the one a new instance of the key reopens
            state.reopenable[inc.incident_key] = inc
        else:
            inc.resolved_at = None
            state.active[inc.incident_key] = inc
            if state.reopenable.get(inc.incident_key) is inc:
                del state.reopenable[inc.incident_key]
    firing = AlertStatus.FIRING
    for m in p.members:
        fp = m.alert.fingerprint
        state.members[fp] = MemberState(fp, m.incident_id, m.status, m.alert.starts_at, m.resolved_by)
        target = state.incidents.get(m.incident_id)
        if target is not None:
            if m.status == firing:
                target.firing.add(fp)
            else:
                target.firing.discard(fp)


class _Planner:
    """One webhook's decision in progress. The public methods are the three passes of `plan`; each private
    one is one rule of the module docstring."""

    def __init__(
        self,
        mappings: dict[str, Mapping],
        state: State,
        now: datetime,
        external_url: str,
        owner_snapshot: Callable[[str], dict[str, Any]],
        actor: str = ACTOR,
        event_detail: dict[str, Any] | None = None,
        reopen_since: datetime | None = None,
    ):
        self.plan = Plan()
        self.mappings = mappings
        self.state = state  # a working copy: the rules change its incidents' statuses and firing members
        self.reopen_since = reopen_since  # with a batch's state: reopenable only if resolved since then
        self.now = now
        self.external_url = external_url
        self.owner_snapshot = owner_snapshot
        self.actor = actor
        self.event_detail = event_detail or {}
        self.refired_after: str | None = None  # set by `fire` for the alert being planned
        self.opened: dict[str, NewIncident] = {}  # the incidents this webhook opens, by key

    # --- the passes -------------------------------------------------------------------------------

    def run(self, alerts: list[Alert]) -> Plan:
        # Firing first, so that a payload resolving one member and firing another never flaps the incident.
        for alert in sorted(alerts, key=lambda a: a.status == _RESOLVED):
            if alert.status == _FIRING:
                self.fire(alert)
            else:
                self.resolve(alert)
        self.resolve_quiet_incidents()
        return self.plan

    def fire(self, alert: Alert) -> None:
        known = self.state.members.get(alert.fingerprint)
        refires = known is not None and self._refires(alert, known)
        if known is not None and alert.starts_at <= known.starts_at and not refires:
            self._known_firing(alert, known)
            return
        # the timeline says which inferred resolve the firing proved wrong
        self.refired_after = known.resolved_by if refires and known is not None else None
        mapping = self.mappings[alert.fingerprint]
        key = mapping.incident_key
        active = self.state.active.get(key)
        reopenable: IncidentState | None = self.state.reopenable.get(key) if active is None else None
        if (
            reopenable is not None
            and self.reopen_since is not None
            and (reopenable.resolved_at is None or reopenable.resolved_at < self.reopen_since)
        ):
            reopenable = None
        if active is None and key in self.opened:
            self._join_opened(self.opened[key], alert, mapping)
        elif active is None and reopenable is None:
            self._open(alert, mapping)
        else:
            self._join_active(active or self._reopen(reopenable), alert, mapping)  # type: ignore[arg-type]
        self._outcome(alert, _NEW if known is None else _UPDATED)

    def resolve(self, alert: Alert) -> None:
        known = self.state.members.get(alert.fingerprint)
        inc = self.state.incidents.get(known.incident_id) if known is not None else None
        if known is None or alert.starts_at < known.starts_at or inc is None:
            self._outcome(alert, _STALE)  # never seen firing, or an older instance: nothing to resolve
        elif known.status == _RESOLVED and alert.starts_at == known.starts_at:
            self._known_resolve(inc, alert)
        else:
            self._resolve(inc, alert)

    def resolve_quiet_incidents(self) -> None:
        """No firing member left: the incident resolves (incidents opened by this webhook always fire)."""
        for inc_id in list(self.plan.keys):
            inc = self.state.incidents.get(inc_id)
            if inc is None or inc.status == _INCIDENT_RESOLVED or inc.firing or inc.firing_elsewhere:
                continue
            ch = self._change(inc)
            ch.status, ch.resolved, ch.resolved_by = _INCIDENT_RESOLVED, True, self.actor
            self._event(inc_id, "resolved", {"reason": "all alerts resolved"})
            self._touch(inc.id, inc.incident_key, _ACTION_RESOLVED)

    # --- firing -----------------------------------------------------------------------------------

    def _refires(self, alert: Alert, known: MemberState) -> bool:
        """The instance we know, reported firing after a resolve we only inferred: it fires again, as a new
        instance would (the stale timer or reconciliation guessed; the sender still has it)."""
        return (
            alert.starts_at == known.starts_at and known.status == _RESOLVED and known.resolved_by in INFERRED_RESOLVERS
        )

    def _known_firing(self, alert: Alert, known: MemberState) -> None:
        """A firing for an instance we know: a duplicate while its member fires in an active incident, which
        changes only receive counts and last_seen. Otherwise stale, changing nothing: the instance was already
        resolved (HA peers send exactly this), is older than the one we know, or its incident was resolved by
        hand or as stale, which this instance never reopens."""
        inc = self.state.incidents.get(known.incident_id)
        if (
            alert.starts_at != known.starts_at
            or known.status != _FIRING
            or inc is None
            or inc.status == _INCIDENT_RESOLVED
        ):
            self._outcome(alert, _STALE)
            return
        self._outcome(alert, _DUPLICATE)
        self._member(inc.id, alert, _FIRING, alert.ends_at)
        self._evidence(self._change(inc).metadata, alert)
        self._touch(inc.id, inc.incident_key, _UNCHANGED)

    def _join_active(self, target: IncidentState, alert: Alert, mapping: Mapping) -> None:
        ch = self._change(target)
        self._evidence(ch.metadata, alert)
        self._raise_severity(target, ch, mapping.severity)
        target.firing.add(alert.fingerprint)
        self._member(target.id, alert, _FIRING, alert.ends_at)
        self._event(target.id, "alert_fired", _alert_detail(alert))
        self._touch(target.id, target.incident_key, _ACTION_UPDATED)

    def _join_opened(self, ni: NewIncident, alert: Alert, mapping: Mapping) -> None:
        """Another alert of a key this webhook opens: no severity event, the incident opens at the highest."""
        if severity_rank(mapping.severity) > severity_rank(ni.severity):
            ni.severity = mapping.severity
        self._evidence(ni.metadata, alert)
        self._member(ni.id, alert, _FIRING, alert.ends_at)
        self._event(ni.id, "alert_fired", _alert_detail(alert))

    def _reopen(self, inc: IncidentState) -> IncidentState:
        """A new instance of a key whose incident resolved within the reopen window: the incident opens again,
        one more flap, its escalation restarts and any acknowledgement is cleared."""
        ch = self._change(inc)
        ch.status, ch.reopened, ch.resolved = _OPEN, True, False
        ch.rearm = ch.clear_ack = True
        ch.flap_count += 1
        inc.status = _OPEN
        self.state.active[inc.incident_key] = inc
        self._event(inc.id, "reopened", {"flap_count": ch.flap_count})
        self._touch(inc.id, inc.incident_key, _ACTION_REOPENED)
        return inc

    def _open(self, alert: Alert, mapping: Mapping) -> None:
        ni = NewIncident(
            id=uuid.uuid4(),
            incident_key=mapping.incident_key,
            route=mapping.route,
            kind=mapping.kind,
            severity=mapping.severity,
            owner=self.owner_snapshot(mapping.owner),
            mapping_rule=mapping.rule,
            metadata={"alerts_received": 0},
        )
        self._evidence(ni.metadata, alert)
        self.opened[ni.incident_key] = ni
        self.plan.new_incidents.append(ni)
        self._member(ni.id, alert, _FIRING, alert.ends_at)
        self._event(
            ni.id,
            "opened",
            {
                "route": ni.route,
                "kind": ni.kind,
                "severity": ni.severity,
                "rule": ni.mapping_rule,
                "owner": mapping.owner,
            },
        )
        self._event(ni.id, "alert_fired", _alert_detail(alert))
        self._touch(ni.id, ni.incident_key, _ACTION_OPENED)

    def _raise_severity(self, target: IncidentState, ch: IncidentChange, severity: str) -> None:
        """Severity only rises while an incident is active. Rising to the highest re-arms escalation on its
        policy, even when acknowledged: the acknowledgement is cleared."""
        if severity_rank(severity) <= severity_rank(ch.severity):
            return
        self._event(target.id, "severity_raised", {"from": ch.severity, "to": severity})
        ch.severity = severity
        ch.severity_raised = True
        if ch.severity != _HIGHEST_SEVERITY or ch.rearm:
            return
        ch.rearm = True
        if ch.status == _ACKNOWLEDGED:
            ch.status, ch.clear_ack = _OPEN, True
            target.status = _OPEN
            self._event(target.id, "unacknowledged", {"reason": f"severity raised to {_HIGHEST_SEVERITY}"})

    # --- resolved ---------------------------------------------------------------------------------

    def _known_resolve(self, inc: IncidentState, alert: Alert) -> None:
        """The resolve of a member already resolved (an HA copy, a retry): only its receive count changes."""
        self._outcome(alert, _DUPLICATE)
        # a sender's resolve turns an inferred one into a fact; an inferred one never overwrites a fact
        known = self.state.members[alert.fingerprint]
        resolver = known.resolved_by if self.actor in INFERRED_RESOLVERS and known.resolved_by else self.actor
        self._member(inc.id, alert, _RESOLVED, alert.ends_at or self.now, resolver)
        if inc.status != _INCIDENT_RESOLVED:
            self._touch(inc.id, inc.incident_key, _UNCHANGED)

    def _resolve(self, inc: IncidentState, alert: Alert) -> None:
        """A resolve marks its member resolved, on the timeline too; whether the incident follows is decided
        once every alert is planned (`resolve_quiet_incidents`)."""
        ends_at = alert.ends_at or self.now
        self._member(inc.id, alert, _RESOLVED, ends_at, self.actor)
        self._event(inc.id, "alert_resolved", _alert_detail(alert, ends_at=ends_at))
        inc.firing.discard(alert.fingerprint)
        self._outcome(alert, _UPDATED)
        if inc.status != _INCIDENT_RESOLVED:
            self._change(inc)
            self._touch(inc.id, inc.incident_key, _ACTION_UPDATED)

    # --- what every rule records ------------------------------------------------------------------

    def _change(self, inc: IncidentState) -> IncidentChange:
        """The change of an existing incident, started from its state the first time a rule touches it."""
        ch = self.plan.changes.get(inc.id)
        if ch is None:
            ch = IncidentChange(
                inc.id,
                inc.severity,
                inc.status,
                dict(inc.metadata),
                inc.flap_count,
                kind=inc.kind,
                first_seen=inc.first_seen,
            )
            self.plan.changes[inc.id] = ch
        return ch

    def _event(self, incident_id: uuid.UUID, event_type: str, detail: dict[str, Any]) -> None:
        if self.event_detail and event_type in ("alert_fired", "alert_resolved"):
            detail = {**detail, **self.event_detail}
        if self.refired_after and event_type == "alert_fired":
            detail = {**detail, "after_inferred_resolve": self.refired_after}
        self.plan.events.append(Event(incident_id, event_type, detail, self.actor))

    def _touch(self, inc_id: uuid.UUID, key: str, action: Action) -> None:
        self.plan.keys[inc_id] = key
        if action is not _UNCHANGED:  # the weakest never replaces anything: skip the lookups
            self.plan.act(inc_id, action)

    def _member(
        self,
        incident_id: uuid.UUID,
        alert: Alert,
        status: AlertStatus,
        ends_at: datetime | None,
        resolved_by: str | None = None,
    ) -> None:
        self.plan.members.append(MemberWrite(incident_id, alert, status, ends_at, resolved_by))

    def _evidence(self, metadata: dict[str, Any], alert: Alert) -> None:
        """What the page and the messages show of the latest alert, and the receive count."""
        annotations = alert.annotations
        if annotations:
            for ann, name in EVIDENCE_ANNOTATIONS.items():
                value = annotations.get(ann)  # one look-up a name, not two: this runs for every alert
                if value:
                    metadata[name] = value
        if alert.generator_url:
            metadata["generator_url"] = alert.generator_url
        if self.external_url:
            metadata["external_url"] = self.external_url
        metadata["alerts_received"] = int(metadata.get("alerts_received", 0)) + 1
        metadata["last_alertname"] = alert.labels.get("alertname", "")

    def _outcome(self, alert: Alert, outcome: Outcome) -> None:
        self.plan.outcomes[outcome] += 1
        self.plan.alert_outcomes.append((alert, outcome))


def _working_copy(state: State) -> State:
    """The state with a copy of each incident, whose status and firing members the rules change as they go.
    Members are frozen and never replaced, so they are shared."""
    copies: dict[uuid.UUID, IncidentState] = {}

    def own(inc: IncidentState) -> IncidentState:
        copy = copies.get(inc.id)
        if copy is None:
            # the constructor, not dataclasses.replace (which looks the fields up on every call: ~5 us an incident)
            copy = copies[inc.id] = IncidentState(
                inc.id,
                inc.incident_key,
                inc.status,
                inc.severity,
                inc.metadata,
                set(inc.firing),
                inc.flap_count,
                inc.resolved_at,
                inc.kind,
                inc.first_seen,
                inc.firing_elsewhere,
            )
        return copy

    return State(
        active={key: own(inc) for key, inc in state.active.items()},
        reopenable={key: own(inc) for key, inc in state.reopenable.items()},
        incidents={inc_id: own(inc) for inc_id, inc in state.incidents.items()},
        members=state.members,
    )


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
