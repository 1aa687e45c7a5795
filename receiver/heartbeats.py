"""Heartbeats: watch the watchers. A sender that must keep pinging (Alertmanager's Watchdog, a cron job) and the
incident its silence opens.

- An alert matching a heartbeat's matchers is a **ping** (`take_pings`, called by ingest before correlation): it
  moves the heartbeat's last ping forward and never becomes an incident itself. Only a firing alert is a ping: a
  Watchdog that Alertmanager reports resolved is the opposite of a sign of life, and is dropped. The API pings
  too (`POST /api/heartbeats/{name}/ping`).
- No ping for `every + grace` after its last sign of life (`deadline`) opens the incident
  `heartbeat <name>::heartbeat_missed` through the same correlation and store path as alerts: the check
  (`HeartbeatMonitor.tick(now)`) ingests a synthetic firing alert whose instance is (fingerprint
  `heartbeat:<name>`, startsAt = the deadline it missed), with actor `heartbeat`. It pages, escalates, is
  acknowledged and reopens within the reopen window exactly as an alert's incident does.
- The next ping resolves it: the check ingests that instance's resolve and puts a `heartbeat_resumed` event with
  the gap on the timeline.

Every step is safe on several replicas at once: the alert instance is a function of the shared state (the
deadline), so two replicas ingesting it make one incident (the second is a duplicate), and only the replica whose
resolve changed the incident writes the gap event. State is in the `heartbeats` table; the config says which
heartbeats exist and their timings.

**The start-up rule.** A heartbeat's deadline counts from its last sign of life: the later of its last ping and
its clock's start (`HeartbeatState.last_seen`). The clock starts when a receiver first starts with the heartbeat
configured (a fresh install never pages at once), and restarts at start-up when no replica checked the heartbeat
for longer than its grace: the receiver was down, and the pings sent meanwhile were lost, not missed, so the
sender gets a whole `every + grace` from the start to be heard. A replica starting while another one watches
changes nothing. The cost: a sender that died while the receiver was down is found `every + grace` after the
receiver is back, not at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import correlation
from .config import Config, Heartbeat
from .model import Alert, AlertStatus, HeartbeatState
from .rules import Mapping
from .store import Store
from .timeutil import format_duration

log = logging.getLogger(__name__)

ACTOR = "heartbeat"
KIND = "heartbeat_missed"
ALERTNAME = "HeartbeatMissed"
RESUMED = "heartbeat_resumed"  # the timeline event with the gap
RULE = "heartbeat"  # the incident's mapping rule
# What is kept of a ping's labels (they are untrusted): enough to tell which sender it was.
MAX_LABELS = 32
MAX_LABEL_CHARS = 200
# Alerts that reconciliation read from Alertmanager's API (receiver/reconcile.py's actor) show that Alertmanager
# holds them, not that its webhooks reach us: a heartbeat's alert read there is dropped, never a ping.
NOT_PINGS = frozenset({correlation.RECONCILER})


def route(name: str) -> str:
    return f"heartbeat {name}"


def incident_key(name: str) -> str:
    return f"{route(name)}::{KIND}"


def fingerprint(name: str) -> str:
    return f"heartbeat:{name}"


def deadline(state: HeartbeatState, hb: Heartbeat) -> datetime:
    """When the heartbeat is missed if nothing pings it before."""
    return state.last_seen + hb.allowed


def status(state: HeartbeatState | None, hb: Heartbeat, now: datetime) -> str:
    """missed (declared, or past its deadline), waiting (no ping yet, clock running) or healthy."""
    if state is None:
        return "waiting"
    if state.missed_at is not None or deadline(state, hb) <= now:
        return "missed"
    return "healthy" if state.last_ping_at is not None else "waiting"


def bounded_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k[:MAX_LABEL_CHARS]: v[:MAX_LABEL_CHARS] for k, v in list(labels.items())[:MAX_LABELS]}


def split_pings(
    heartbeats: Sequence[Heartbeat], alerts: Iterable[Alert], sender: str
) -> tuple[dict[str, dict[str, Any]], list[Alert]]:
    """The alerts that are pings, as one ping record per heartbeat ({name, sender, labels}), and the alerts
    that go on to correlation. A resolved alert matching a heartbeat is neither a ping nor an incident, nor is
    one that reconciliation read (NOT_PINGS)."""
    pings: dict[str, dict[str, Any]] = {}
    rest: list[Alert] = []
    matching = _Index(heartbeats).matching
    for alert in alerts:
        matched = matching(alert.labels)
        if not matched:
            rest.append(alert)
            continue
        if alert.status != AlertStatus.FIRING or sender in NOT_PINGS:
            continue
        for hb in matched:
            pings[hb.name] = {"name": hb.name, "sender": sender, "labels": bounded_labels(alert.labels)}
    return pings, rest


class _Index:
    """The heartbeats by one equality matcher each (usually alertname="Watchdog"): an alert is tried only against
    those whose label it has, one dict lookup instead of every heartbeat's matchers (a 20,000-alert webhook
    with 5 heartbeats: 40 ms of matching before, a few after)."""

    def __init__(self, heartbeats: Sequence[Heartbeat]):
        self.by_label: dict[str, dict[str, list[Heartbeat]]] = {}
        self.others: list[Heartbeat] = []  # no equality matcher with a value: tried on every alert
        for hb in heartbeats:
            key = next((m for m in hb.matchers if m.op == "=" and m.value), None)
            if key is not None:
                self.by_label.setdefault(key.name, {}).setdefault(key.value, []).append(hb)
            elif hb.matchers:
                self.others.append(hb)

    def matching(self, labels: dict[str, str]) -> list[Heartbeat]:
        found = [hb for hb in self.others if hb.matches(labels)]
        for name, by_value in self.by_label.items():
            value = labels.get(name)
            if value is not None:
                found.extend(hb for hb in by_value.get(value, ()) if hb.matches(labels))
        return found


async def take_pings(
    store: Store, heartbeats: Sequence[Heartbeat], alerts: list[Alert], sender: str, now: datetime
) -> tuple[list[Alert], bool]:
    """Record the pings among `alerts` (committed before this returns) and return the others, and whether a
    ping reached a missed heartbeat (its check should run soon, to resolve the incident)."""
    if not heartbeats:
        return alerts, False
    pings, rest = split_pings(heartbeats, alerts, sender)
    if not pings:
        return rest, False
    missed = await store.record_pings(now, [pings[name] for name in sorted(pings)])
    return rest, any(v is not None for v in missed.values())


@dataclass
class CheckResult:
    """What one check did: the heartbeats declared missed and those resolved, and the plans it ingested."""

    missed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    plans: list[correlation.Plan] = field(default_factory=list)


class HeartbeatMonitor:
    """Registers the configured heartbeats at start, records pings, and checks the deadlines (`tick(now)`)."""

    def __init__(self, config: Config, store: Store, owner_snapshot: Callable[[str], dict[str, Any]]):
        self.config = config
        self.store = store
        self.owner_snapshot = owner_snapshot
        self.by_name = {hb.name: hb for hb in config.heartbeats}
        self.wakeup = asyncio.Event()  # set when a ping reaches a missed heartbeat: check now, not at the next tick

    async def start(self, now: datetime) -> None:
        """The start-up rule (module docstring)."""
        if self.by_name:
            await self.store.register_heartbeats(now, {n: hb.grace.total_seconds() for n, hb in self.by_name.items()})

    async def ping(self, name: str, sender: str, now: datetime) -> bool:
        """A ping through the API; True when the heartbeat was missed (its check should run soon)."""
        missed = await self.store.record_pings(now, [{"name": name, "sender": sender, "labels": {}}])
        return missed.get(name) is not None

    async def states(self) -> dict[str, HeartbeatState]:
        return {s.name: s for s in await self.store.heartbeats(list(self.by_name))}

    async def state(self, name: str) -> HeartbeatState | None:
        """One heartbeat's state (None before its clock first started), reading its row only."""
        found = await self.store.heartbeats([name])
        return found[0] if found else None

    async def tick(self, now: datetime) -> CheckResult:
        """One check of every heartbeat at `now`: declare missed, keep asserting, or resolve."""
        result = CheckResult()
        if not self.by_name:
            return result
        states = {s.name: s for s in await self.store.check_heartbeats(now, list(self.by_name))}
        for name, hb in self.by_name.items():
            state = states.get(name)
            if state is None:  # configured since start-up, or pinged before the first start: its clock starts
                await self.store.register_heartbeats(now, {name: hb.grace.total_seconds()})
                continue
            if state.missed_at is None:
                due = deadline(state, hb)
                if due <= now:
                    await self._missed(hb, state, due, now, result)
            elif state.last_ping_at is not None and state.last_ping_at >= state.missed_at:
                await self._resumed(hb, state, state.missed_at, state.last_ping_at, now, result)
            elif state.asserted_at is None or now - state.asserted_at >= self._reassert_every(hb):
                # still silent: the incident's last_seen moves, so the stale timer never resolves it
                silent_since = state.missed_since or state.last_seen
                result.plans.append(await self._ingest(hb, self._alert(hb, state.missed_at, silent_since), now))
                await self.store.mark_heartbeat(now, name, state.missed_at)
        return result

    async def _missed(
        self, hb: Heartbeat, state: HeartbeatState, due: datetime, now: datetime, result: CheckResult
    ) -> None:
        # Ingest first, then mark: a crash in between leaves it unmarked, and the next check ingests the
        # same instance again (a duplicate). A ping in between is seen by the next check, which resolves.
        plan = await self._ingest(hb, self._alert(hb, due, state.last_seen), now)
        await self.store.mark_heartbeat(now, hb.name, due, state.last_seen)
        result.plans.append(plan)
        result.missed.append(hb.name)
        log.warning("heartbeat %s missed: no ping for %s", hb.name, format_duration(now - state.last_seen))

    async def _resumed(
        self,
        hb: Heartbeat,
        state: HeartbeatState,
        missed_at: datetime,
        pinged_at: datetime,
        now: datetime,
        result: CheckResult,
    ) -> None:
        silent_since = state.missed_since or state.last_seen
        alert = self._alert(hb, missed_at, silent_since, resolved_at=pinged_at)
        plan = await self._ingest(hb, alert, now)
        # Only the replica whose resolve changed the member writes the gap (another one's is a duplicate).
        resolved = [e.incident_id for e in plan.events if e.type == "alert_resolved"]
        if resolved:
            gap = pinged_at - silent_since
            await self.store.append_event(
                resolved[0],
                now,
                RESUMED,
                ACTOR,
                {
                    "heartbeat": hb.name,
                    "gap": format_duration(gap),
                    "gap_seconds": round(gap.total_seconds()),
                    "silent_since": silent_since.isoformat(),
                    "pinged_at": pinged_at.isoformat(),
                    "sender": state.last_sender or "",
                },
            )
            log.info("heartbeat %s resumed after %s", hb.name, format_duration(gap))
        await self.store.mark_heartbeat(now, hb.name, missed_at, clear=True)
        result.plans.append(plan)
        result.resumed.append(hb.name)

    def _reassert_every(self, hb: Heartbeat) -> timedelta:
        return min(hb.every, self.config.correlation.stale_after / 4)

    def _alert(
        self, hb: Heartbeat, missed_at: datetime, silent_since: datetime, resolved_at: datetime | None = None
    ) -> Alert:
        allowed = format_duration(hb.allowed)
        return Alert(
            index=0,
            fingerprint=fingerprint(hb.name),
            status=AlertStatus.RESOLVED if resolved_at is not None else AlertStatus.FIRING,
            labels={"alertname": ALERTNAME, "heartbeat": hb.name, "severity": hb.severity},
            annotations={
                "summary": f"No ping from heartbeat {hb.name} for {allowed} "
                f"(every {format_duration(hb.every)} + grace {format_duration(hb.grace)})",
                "description": f"Its last sign of life was at {silent_since.isoformat()}. Whatever sends it "
                "(a Prometheus and Alertmanager pipeline, a cron job) may be down: alerts may "
                "not be reaching this receiver.",
            },
            starts_at=missed_at,
            ends_at=resolved_at,
            generator_url="",
        )

    async def _ingest(self, hb: Heartbeat, alert: Alert, now: datetime) -> correlation.Plan:
        mapping = Mapping(route=route(hb.name), kind=KIND, severity=hb.severity, owner=hb.owner, rule=RULE)
        return await self.store.ingest(
            [alert],
            {alert.fingerprint: mapping},
            now,
            reopen_window_start=now - self.config.correlation.reopen_window,
            owner_snapshot=self.owner_snapshot,
            resolve_notice_severities=self.config.escalation.resolve_notice_severities,
            actor=ACTOR,
        )
