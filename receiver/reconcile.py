"""Reconciliation with Alertmanager's API v2: incidents stay true when webhooks are lost.

Every `alertmanager.reconcile.interval`, one replica (the holder of a lease row in the database, taken at most
once per interval) asks every configured peer for the alerts of our receiver (active, silenced, inhibited and
unprocessed alike) and compares them with the firing members of active incidents:

- lost resolves: a member that came from our receiver and that no peer lists is absent since that check
  (`incident_alerts.absent_since`, in the database, so the grace survives restarts and is shared by replicas);
  once absent in every check for `reconcile.grace`, it is resolved through the ingest path with actor
  `reconciler` and the peers' answers on its timeline event, and its incident resolves when no member fires.
  Only on evidence: if any peer failed, nothing is resolved in that run;
- lost firings: an alert a peer lists as active, at least `grace` old, whose instance (fingerprint, startsAt)
  we never saw is ingested as a webhook's firing would be (same parser, mapping and correlation);
- suppression: an incident whose firing members are all silenced or inhibited in Alertmanager records which
  silences (by id, with creator, comment and end) and inhibitors, on the incident and its timeline, and does not
  escalate until the suppression ends.

Every write goes through a statement that is idempotent under two replicas (the planner's own rules, or a write
only where the value changes), so even two runs at once record each event once. Peers are asked concurrently,
each within `alertmanager.timeout`, in this loop's own task and with no transaction open: a slow peer delays
only reconciliation, never ingest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .alertmanager_api import AlertmanagerAPI, AlertmanagerError, APIAlert
from .config import AlertmanagerConfig, Config
from .correlation import RECONCILER
from .ingest.alertmanager import SENDER as ALERTMANAGER_SENDER
from .ingest.alertmanager import parse_alert
from .ingest.service import Ingestor
from .metrics import Metrics
from .model import Alert, AlertStatus, Notification, ReconcileMember
from .store import Store

log = logging.getLogger(__name__)

LEASE = "alertmanager-reconcile"
MAX_SILENCE_LOOKUPS = 50  # silences fetched by id per run; more are shown by id only
# a replica that dies mid-run holds the lease this long past the peers' timeout
_LEASE_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True)
class PeerAnswer:
    peer: str
    alerts: list[APIAlert] | None  # None: the peer failed
    error: str | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What the timeline says the peer answered."""
        if self.alerts is None:
            return {"url": self.peer, "error": self.error}
        return {"url": self.peer, "alerts": len(self.alerts)}


@dataclass
class ReconcileResult:
    result: str  # ok | peer_error | skipped (metrics.RECONCILE_RESULTS)
    resolved: int = 0
    ingested: int = 0
    suppressed: int = 0
    unsuppressed: int = 0
    peers: list[dict[str, Any]] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        config: Config,
        store: Store,
        ingestor: Ingestor,
        api: AlertmanagerAPI,
        *,
        metrics: Metrics | None = None,
        holder: str | None = None,
        on_unsuppressed: Callable[[], None] | None = None,
    ):
        assert config.alertmanager is not None
        self.am: AlertmanagerConfig = config.alertmanager
        self.store = store
        self.ingestor = ingestor
        self.api = api
        self.metrics = metrics
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_unsuppressed = on_unsuppressed
        # the member alerts of our receiver carry this source (Ingestor.ingest): only those are compared
        self.source = f"{ALERTMANAGER_SENDER}/{self.am.receiver}"
        self._failing: dict[str, str] = {}  # peer -> error at the last run: logged once per change

    async def run(self, now: datetime) -> ReconcileResult:
        """One reconciliation, if this replica takes the lease (else `skipped`)."""
        interval = self.am.reconcile.interval
        lease = self.am.timeout * 2 + _LEASE_MARGIN
        started = time.perf_counter()
        try:
            # 0.9: a run that started a little early on another replica's clock still leaves this one its turn
            if not await self.store.claim_reconcile_lease(
                LEASE, self.holder, now, lease=lease, interval=interval * 0.9
            ):
                self._count(ReconcileResult("skipped"))
                return ReconcileResult("skipped")
            try:
                result = await self._reconcile(now)
            finally:
                await self.store.release_reconcile_lease(LEASE, self.holder, now)
        except BaseException:
            if self.metrics:
                self.metrics.reconcile_run("error", time.perf_counter() - started)
            raise
        self._count(result, time.perf_counter() - started)
        return result

    def _count(self, result: ReconcileResult, seconds: float | None = None) -> None:
        if self.metrics is None:
            return
        self.metrics.reconcile_run(result.result, seconds if result.result != "skipped" else None)
        self.metrics.reconciled("resolved", result.resolved)
        self.metrics.reconciled("ingested", result.ingested)

    async def _reconcile(self, now: datetime) -> ReconcileResult:
        answers = await asyncio.gather(*(self._ask(peer) for peer in self.am.urls))
        self._log_peer_state(answers)
        peers = [a.summary() for a in answers]
        listed: dict[str, list[APIAlert]] = {}
        for answer in answers:
            for alert in answer.alerts or ():
                listed.setdefault(alert.fingerprint, []).append(alert)
        members = await self.store.reconcile_members()
        # a firing that peers list is evidence even when another peer failed
        ingested = await self._lost_firings(now, answers, listed, members)
        if any(a.alerts is None for a in answers):
            return ReconcileResult("peer_error", ingested=ingested, peers=peers)
        resolved = await self._lost_resolves(now, members, listed, peers)
        suppressed, unsuppressed = await self._suppression(now, members, listed, answers)
        return ReconcileResult(
            "ok", resolved=resolved, ingested=ingested, suppressed=suppressed, unsuppressed=unsuppressed, peers=peers
        )

    async def _ask(self, peer: str) -> PeerAnswer:
        started = time.perf_counter()
        try:
            alerts = await self.api.alerts(peer)
        except AlertmanagerError as e:
            return PeerAnswer(peer, None, e.reason, time.perf_counter() - started)
        return PeerAnswer(peer, alerts, None, time.perf_counter() - started)

    def _log_peer_state(self, answers: Sequence[PeerAnswer]) -> None:
        """Once per change of which peers fail (and why), not once per run."""
        failing = {a.peer: a.error or "" for a in answers if a.alerts is None}
        if failing == self._failing:
            return
        if failing:
            log.warning(
                "reconcile: nothing is resolved while an Alertmanager peer fails: %s",
                "; ".join(f"{peer}: {why}" for peer, why in failing.items()),
            )
        else:
            log.info("reconcile: every Alertmanager peer answers again")
        self._failing = failing

    # --- lost firings -------------------------------------------------------------------------------

    async def _lost_firings(
        self,
        now: datetime,
        answers: Sequence[PeerAnswer],
        listed: dict[str, list[APIAlert]],
        members: Sequence[ReconcileMember],
    ) -> int:
        """Active alerts older than the grace whose instance no webhook brought: ingested as firing."""
        cutoff = now - self.am.reconcile.grace
        # the instances firing here need no look-up: usually every alert listed, so usually no query at all
        firing = {(m.fingerprint, m.starts_at) for m in members}
        latest: dict[str, APIAlert] = {}
        for fingerprint, alerts in listed.items():
            for a in alerts:
                if (fingerprint, a.starts_at) in firing:
                    continue
                # suppressed or not yet processed alerts were rightly not sent to us
                if a.state == "active" and a.starts_at <= cutoff:
                    cur = latest.get(fingerprint)
                    if cur is None or a.starts_at > cur.starts_at:
                        latest[fingerprint] = a
        if not latest:
            return 0
        unseen = await self.store.unseen_instances([(a.fingerprint, a.starts_at) for a in latest.values()])
        if not unseen:
            return 0
        lost: list[Alert] = []
        for i, a in enumerate(a for a in latest.values() if (a.fingerprint, a.starts_at) in unseen):
            try:
                lost.append(parse_alert(i, a.raw()))  # the webhook's own parser: same checks, same cleaning
            except ValueError as e:
                log.warning("reconcile: alert %s from Alertmanager's API is not valid: %s", a.fingerprint[:64], e)
        if not lost:
            return 0
        detail = {
            "reason": "listed firing by Alertmanager but never received as a webhook",
            "peers": [
                {"url": ans.peer, "listed": any(x.fingerprint in latest for x in ans.alerts or ())}
                if ans.alerts is not None
                else ans.summary()
                for ans in answers
            ],
        }
        plan = await self.ingestor.ingest(
            Notification(sender=RECONCILER, alerts=lost), now, source=self.source, event_detail=detail
        )
        ingested = sum(1 for _, outcome in plan.alert_outcomes if outcome in ("new", "updated"))
        if ingested:
            log.info("reconcile: %d firing alert(s) Alertmanager never delivered were ingested", ingested)
        return ingested

    # --- lost resolves ------------------------------------------------------------------------------

    async def _lost_resolves(
        self,
        now: datetime,
        members: Sequence[ReconcileMember],
        listed: dict[str, list[APIAlert]],
        peers: list[dict[str, Any]],
    ) -> int:
        grace = self.am.reconcile.grace
        ours = [m for m in members if m.source == self.source]
        absent = [m for m in ours if m.fingerprint not in listed]
        back = [m for m in ours if m.fingerprint in listed and m.absent_since is not None]
        newly_absent = [m for m in absent if m.absent_since is None]
        if newly_absent or back:
            await self.store.mark_absence(
                now,
                absent=[(m.incident_id, m.fingerprint) for m in newly_absent],
                present=[(m.incident_id, m.fingerprint) for m in back],
            )
        due = [m for m in absent if (m.absent_since or now) <= now - grace]
        if not due:
            return 0
        alerts = [
            replace(a, status=AlertStatus.RESOLVED, ends_at=now)
            for a in await self.store.reconcile_member_alerts([(m.incident_id, m.fingerprint) for m in due])
        ]
        detail = {
            "reason": "no Alertmanager peer listed it in any check for the grace period",
            "grace_seconds": int(grace.total_seconds()),
            "absent_since": min(m.absent_since or now for m in due).isoformat(),
            "peers": peers,
        }
        plan = await self.ingestor.ingest(
            Notification(sender=RECONCILER, alerts=alerts), now, source=self.source, event_detail=detail
        )
        resolved = sum(1 for _, outcome in plan.alert_outcomes if outcome == "updated")
        if resolved:
            log.info("reconcile: %d alert(s) no Alertmanager peer lists any more were resolved", resolved)
        return resolved

    # --- suppression ----------------------------------------------------------------------------------

    async def _suppression(
        self,
        now: datetime,
        members: Sequence[ReconcileMember],
        listed: dict[str, list[APIAlert]],
        answers: Sequence[PeerAnswer],
    ) -> tuple[int, int]:
        """Incidents whose firing members every peer listing them says are suppressed; written where changed."""
        by_incident: dict[uuid.UUID, list[ReconcileMember]] = {}
        for m in members:
            by_incident.setdefault(m.incident_id, []).append(m)
        found: dict[uuid.UUID, tuple[set[str], set[str], int]] = {}
        for incident_id, ms in by_incident.items():
            silences: set[str] = set()
            inhibitors: set[str] = set()
            if all(
                m.source == self.source
                and m.fingerprint in listed
                and all(a.state == "suppressed" for a in listed[m.fingerprint])
                for m in ms
            ):
                for m in ms:
                    for a in listed[m.fingerprint]:
                        silences.update(a.silenced_by)
                        inhibitors.update(a.inhibited_by)
                found[incident_id] = (silences, inhibitors, len(ms))
        lookups = await self._silences(
            sorted({s for sil, _, _ in found.values() for s in sil})[:MAX_SILENCE_LOOKUPS], answers
        )
        changes: list[tuple[uuid.UUID, dict[str, Any] | None]] = []
        for incident_id, ms in by_incident.items():
            current = ms[0].suppressed
            wanted: dict[str, Any] | None = None
            if incident_id in found:
                silences, inhibitors, n = found[incident_id]
                wanted = {
                    "silences": [lookups.get(s) or {"id": s} for s in sorted(silences)],
                    "inhibited_by": sorted(inhibitors),
                    "alerts": n,
                }
            if ({k: v for k, v in current.items() if k != "since"} if current else None) != wanted:
                changes.append((incident_id, wanted))
        if not changes:
            return 0, 0
        written = await self.store.set_suppressed(now, changes, actor=RECONCILER)
        unsuppressed = sum(1 for _, t in written if t == "unsuppressed")
        if unsuppressed and self.on_unsuppressed:
            self.on_unsuppressed()  # paging resumes now, not at the next tick
        return len(written) - unsuppressed, unsuppressed

    async def _silences(self, ids: Sequence[str], answers: Sequence[PeerAnswer]) -> dict[str, dict[str, Any]]:
        """The silences by id, from the first peer that answered (silences gossip): who, why, until when."""
        peer = next((a.peer for a in answers if a.alerts is not None), None)
        if not ids or peer is None:
            return {}

        async def one(silence_id: str) -> tuple[str, dict[str, Any] | None]:
            try:
                silence = await self.api.silence(peer, silence_id)
            except AlertmanagerError:
                return silence_id, None  # shown by id; the next run asks again
            if silence is None:
                return silence_id, None
            return silence_id, {
                "id": silence.id,
                "created_by": silence.created_by,
                "comment": silence.comment,
                "ends_at": silence.ends_at.isoformat() if silence.ends_at else None,
                "state": silence.state,
            }

        found = await asyncio.gather(*(one(i) for i in ids))
        return {i: s for i, s in found if s is not None}
