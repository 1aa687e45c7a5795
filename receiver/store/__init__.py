"""The store: the only place that talks SQL. Named queries live in queries.sql, loaded once.

Methods are named for intent and work on batches; driver errors become StoreUnavailable, which the
web layer answers with 503 so that Alertmanager retries. Reads return the frozen types of receiver/model.py,
built here from rows (column names are field names), so no other layer reads a row. Writes send JSON record
sets whose fields are named both here and in the query's column definitions (tests/unit/test_store_records.py
holds the two lists together), never long positional parameter lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable, Container, Iterable, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import asyncpg

from .. import correlation, jsontext
from ..model import (
    ActiveCount,
    ActiveIncidents,
    Alert,
    AlertStatus,
    BoundedPage,
    DeliveryOutcome,
    DueIncident,
    Escalation,
    HeartbeatState,
    Incident,
    IncidentStatus,
    IncidentSummary,
    IncidentView,
    MemberAlert,
    MirroredSilence,
    OutboxItem,
    ReconcileMember,
    SilenceToExpire,
    StaleResolved,
    StatusCount,
    Target,
    TimelineEvent,
    TimerPass,
    Transition,
    as_dict,
)
from ..rules import Mapping


class StoreError(Exception):
    """A database error."""


class StoreUnavailable(StoreError):
    """The database is unavailable or the transaction failed; the work can be retried."""


class StoreRejected(StoreUnavailable):
    """The database refused the transaction for a reason that is not transient (a constraint, a trigger): the
    same write would fail again. Still answered 503; the batcher retries a refused batch's webhooks alone."""


class LinkAlreadyUsed(StoreError):
    """The signed link was used before."""


def _load_queries() -> dict[str, str]:
    try:
        text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):  # pragma: no cover - a checkout without package data
        text = (Path(__file__).parent / "queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    parts = re.split(r"^-- (\w+) --$", text, flags=re.MULTILINE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = body.strip()
    return queries


QUERIES = _load_queries()

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. the server vanished in the middle of COMMIT
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.UniqueViolationError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    TimeoutError,
)


# Webhooks with more alerts are planned in a worker thread (the planner and the encoding are pure functions).
OFF_LOOP_ALERTS = 500

_dumps = jsontext.dumps


def _dumps_records(records: list[dict[str, Any]]) -> str:
    # most plans leave one or more record sets empty (no new incident, no event for a duplicate): the encoder's
    # call costs ~3 us even for an empty list, a few times per webhook
    return _dumps(records) if records else "[]"


# Each incident key costs its transaction one advisory lock, and PostgreSQL's lock table is shared and small
# (max_locks_per_transaction x connections: 64 x ~120 by default). A webhook with more keys than this is
# written in several transactions, each committed before the next begins (see key_chunks), so whatever
# the webhook, one ingest transaction holds at most this many advisory locks.
MAX_KEYS_PER_TRANSACTION = 256


class Store:
    def __init__(self, pool: asyncpg.Pool, *, max_ingest_transactions: int | None = None):
        self.pool = pool
        # Webhooks of one alert group lock the same keys: past a few concurrent transactions they only
        # queue on those locks inside PostgreSQL, holding connections. Queueing here is cheaper.
        self._ingest_slots = asyncio.Semaphore(max_ingest_transactions) if max_ingest_transactions else None

    # --- ingest ---------------------------------------------------------------------------------

    async def ingest(
        self,
        alerts: Sequence[Alert],
        mappings: dict[str, Mapping],
        now: datetime,
        *,
        reopen_window_start: datetime,
        external_url: str = "",
        owner_snapshot: Callable[[str], dict[str, Any]] = lambda name: {"name": name},
        resolve_notice_severities: frozenset[str] = frozenset(),
        actor: str = correlation.ACTOR,
        source: str | None = None,
        event_detail: dict[str, Any] | None = None,
    ) -> correlation.Plan:
        """Correlate one webhook's alerts: lock keys, read state, plan, write; one transaction per chunk of at
        most MAX_KEYS_PER_TRANSACTION incident keys (one, for any webhook Alertmanager usually sends).
        `actor`, the sender's name, is the actor of the timeline events its alerts cause; `source`
        ('<sender>/<receiver>') is kept on the member alerts written (reconciliation compares those of its
        receiver); `event_detail` goes into each alert's timeline event."""
        plan = correlation.Plan()
        chunks = webhook_chunks(
            correlation.dedupe(alerts),
            mappings,
            now,
            reopen_window_start=reopen_window_start,
            external_url=external_url,
            owner_snapshot=owner_snapshot,
            actor=actor,
            event_detail=event_detail,
        )
        for webhook in chunks:
            # a transaction per chunk, so other webhooks go in between the chunks of a huge one
            [chunk_plan] = await self.ingest_batch([webhook], resolve_notice_severities, [source])
            plan.merge(chunk_plan)
        return plan

    async def ingest_batch(
        self,
        webhooks: Sequence[correlation.Webhook],
        resolve_notice_severities: frozenset[str] = frozenset(),
        sources: Sequence[str | None] = (),
    ) -> list[correlation.Plan]:
        """Correlate several webhooks (each at most MAX_KEYS_PER_TRANSACTION keys; together, see the batcher)
        in one transaction: lock the union of their keys, read the state once, plan each in order against the
        state the ones before it leave (correlation.plan_batch), write the plans (one statement for each run of
        webhooks that write disjoint rows, the statements pipelined in one round trip), commit once. Writes
        exactly what ingesting them one by one in this order would.
        Raises StoreUnavailable for a transient error, StoreRejected for one that would happen again."""
        keys = sorted(frozenset().union(*(w.keys for w in webhooks)))
        fingerprints = sorted({a.fingerprint for w in webhooks for a in w.alerts})
        since = min(w.reopen_window_start for w in webhooks)
        sources = list(sources) or [None] * len(webhooks)
        try:
            async with self._ingest_slots or contextlib.nullcontext(), self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(QUERIES["ingest_state"], keys, fingerprints, since)

                def plan_and_encode() -> tuple[list[correlation.Plan], list[_ApplyArgs]]:
                    plans = correlation.plan_batch(webhooks, _state(rows))
                    records = [
                        _plan_records(p, w.now, resolve_notice_severities, src)
                        for p, w, src in zip(plans, webhooks, sources, strict=True)
                    ]
                    return plans, _apply_statements(plans, records, [w.keys for w in webhooks])

                if sum(len(w.alerts) for w in webhooks) > OFF_LOOP_ALERTS:
                    plans, statements = await asyncio.get_running_loop().run_in_executor(None, plan_and_encode)
                else:
                    plans, statements = plan_and_encode()
                if len(statements) == 1:
                    await conn.execute(QUERIES["apply_ingest"], *statements[0])
                else:
                    # sent together; each statement sees what the ones before it wrote
                    await conn.executemany(QUERIES["apply_ingest"], statements)
        except TRANSIENT_ERRORS as e:
            raise StoreUnavailable(type(e).__name__) from e
        except asyncpg.PostgresError as e:
            raise StoreRejected(type(e).__name__) from e
        return plans

    # --- escalation ----------------------------------------------------------------------------

    async def tick_timers(
        self,
        now: datetime,
        *,
        stale_before: datetime,
        ack_before: datetime | None,
        stale_after_seconds: int,
        notice_severities: Iterable[str],
        batch: int,
    ) -> TimerPass:
        """One pass over every timer but escalation (see the query), and whether escalations and deliveries
        are due."""
        [r] = await self._fetch(
            "tick_timers", now, stale_before, ack_before, batch, stale_after_seconds, list(notice_severities)
        )
        return TimerPass(
            unsilenced=r["unsilenced"],
            ack_timeouts=r["ack_timeouts"],
            stale_resolved=tuple(StaleResolved(kind, severity, float(age)) for kind, severity, age in r["stale"] or ()),
            escalation_due=r["escalation_due"],
            delivery_due=r["delivery_due"],
        )

    async def escalate(
        self, now: datetime, decide: Callable[[Sequence[DueIncident]], list[Escalation]], *, batch: int
    ) -> list[Escalation]:
        """Claim due incidents (SKIP LOCKED), let `decide` plan them, write levels, outbox rows, events."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(QUERIES["claim_escalations"], now, batch)
                if not rows:
                    return []
                plans = decide([_due_incident(r) for r in rows])
                levels, outbox, events = _escalation_records(plans)
                await conn.execute(QUERIES["apply_escalations"], now, levels, outbox, events)
                return plans
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def claim_notifications(self, now: datetime, *, batch: int, lease: timedelta) -> list[OutboxItem]:
        """Lease up to `batch` due outbox items for `lease` (other replicas skip them meanwhile)."""
        return [_outbox_item(r) for r in await self._fetch("claim_notifications", now, batch, lease)]

    async def record_deliveries(
        self,
        now: datetime,
        outcomes: Sequence[DeliveryOutcome],
        events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
    ) -> int:
        """Write the outcomes, each only if its `attempt` still holds the item's lease, and the (incident id,
        type, detail) events. Returns how many outcomes were written."""
        rows = await self._fetch(
            "record_deliveries",
            now,
            _dumps(
                [
                    {
                        "id": o.id,
                        "attempt": o.attempt,
                        "status": o.status,
                        "next_at": o.next_attempt_at.isoformat() if o.next_attempt_at is not None else None,
                        "error": o.error,
                    }
                    for o in outcomes
                ]
            ),
            [e[0] for e in events],
            [e[1] for e in events],
            [_dumps(e[2]) for e in events],
        )
        return int(rows[0]["recorded"])

    # --- lifecycle --------------------------------------------------------------------------------

    async def transition(
        self,
        incident_id: uuid.UUID,
        change: Callable[[Incident], Transition],
        *,
        actor: str,
        now: datetime,
        notice_severities: Container[str] = frozenset(),
        link_signature: str | None = None,
    ) -> tuple[Incident, Incident] | None:
        """Lock one incident, compute its new state with `change` (which may raise), write it and its event;
        resolving an incident of one of `notice_severities` queues resolve notices. Returns (before, after),
        or None for an unknown incident. With `link_signature`, the signed link is spent in the same
        transaction (LinkAlreadyUsed when it was spent before): an action that fails leaves the link unused."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(QUERIES["lock_incident"], incident_id)
                if row is None:
                    return None
                before = Incident(**row)
                if link_signature is not None and await conn.fetchval(QUERIES["use_link"], link_signature, now) is None:
                    raise LinkAlreadyUsed()
                t = change(before)
                after = Incident(
                    **await conn.fetchrow(QUERIES["update_lifecycle"], incident_id, _dumps(_json_record(t.state)))
                )
                # a jsonb parameter goes through the connection's JSON codec: pass the dict itself
                await conn.execute(QUERIES["insert_event"], incident_id, now, t.event, actor, t.detail)
                if after.status == IncidentStatus.RESOLVED and before.severity in notice_severities:
                    await conn.execute(QUERIES["queue_resolve_notices"], incident_id, now)
                return before, after
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def link_secret(self, candidate: str) -> str:
        """The secret that signs links: `candidate` if none was stored yet."""
        # A replica racing another one waits on the other's INSERT and then does nothing, and its statement's
        # snapshot predates that commit: it reads no row. Asked again, the committed secret is visible.
        for _ in range(3):
            rows = await self._fetch("link_secret", candidate)
            if rows:
                return str(rows[0]["value"])
        raise StoreUnavailable("the link-signing secret could not be read")

    # --- Alertmanager silences (receiver/silences.py) -----------------------------------------------

    async def silence_label_sets(
        self, incident_id: uuid.UUID, *, max_firing: int, max_others: int
    ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The label sets of the incident's firing members (at most `max_firing`), and of every member of every
        other active incident that shares an alertname with them (at most `max_others` + 1: more says the
        list was cut)."""
        firing = [dict(r["labels"]) for r in await self._fetch("incident_firing_labels", incident_id, max_firing)]
        if not firing:
            return [], []
        names = sorted({labels.get("alertname", "") for labels in firing})
        others = await self._fetch("other_incident_labels", incident_id, names, max_others + 1)
        return firing, [dict(r["labels"]) for r in others]

    async def record_alertmanager_silences(
        self,
        incident_id: uuid.UUID,
        now: datetime,
        silences: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
    ) -> None:
        """Keep silences ({silence_id, peer, matchers, created_by, ends_at}) and append events ({type, actor,
        detail}), in one transaction."""
        await self._execute("record_alertmanager_silences", incident_id, now, _dumps(silences), _dumps(events))

    async def alertmanager_silences_to_expire(
        self, now: datetime, *, incident_id: uuid.UUID | None = None, limit: int
    ) -> list[SilenceToExpire]:
        """Our Alertmanager silences that must end now (of one incident, or any), oldest first."""
        rows = await self._fetch("alertmanager_silences_to_expire", now, incident_id, limit)
        return [SilenceToExpire(**r) for r in rows]

    async def record_alertmanager_expiries(
        self, now: datetime, expired: Sequence[tuple[str, str]], failed: Sequence[tuple[str, str]], *, actor: str
    ) -> None:
        """Mark (silence id, why) expired and note (silence id, error) failures, each with its timeline event."""
        if expired:
            await self._execute(
                "record_alertmanager_expiries", now, _dumps([{"silence_id": i, "why": w} for i, w in expired]), actor
            )
        if failed:
            await self._execute(
                "record_alertmanager_expiry_failures",
                now,
                _dumps([{"silence_id": i, "error": e} for i, e in failed]),
                actor,
            )

    async def incident_alertmanager_silences(
        self, incident_id: uuid.UUID, *, limit: int
    ) -> tuple[list[MirroredSilence], tuple[str, Any] | None]:
        """The incident's Alertmanager silences (newest first), and the type and detail of the latest attempt's
        event (alertmanager_silenced or alertmanager_silence_failed), if any."""
        rows = await self._fetch("incident_alertmanager_silences", incident_id, limit)
        last = await self._fetch("last_alertmanager_silence_attempt", incident_id)
        silences = [MirroredSilence(**{**r, "matchers": list(r["matchers"])}) for r in rows]
        return silences, ((last[0]["type"], last[0]["detail"]) if last else None)

    # --- reads ----------------------------------------------------------------------------------

    async def list_incidents(
        self,
        *,
        statuses: Sequence[str],
        routes: Sequence[str] = (),
        kinds: Sequence[str] = (),
        severities: Sequence[str] = (),
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[IncidentView]:
        """Newest first, after the keyset `after` (first_seen, id)."""
        first_seen, inc_id = after if after else (None, None)
        rows = await self._fetch(
            "list_incidents", list(statuses), list(routes), list(kinds), list(severities), first_seen, inc_id, limit
        )
        return [IncidentView(**r) for r in rows]

    async def page_incidents(
        self,
        *,
        statuses: Sequence[str],
        severities: Sequence[str],
        routes: Sequence[str],
        kinds: Sequence[str],
        owners: Sequence[str],
        after: tuple[str, datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[IncidentSummary]:
        """The status page's active incidents, most severe then oldest first, after the keyset `after`."""
        sev, first_seen, inc_id = after if after else (None, None, None)
        rows = await self._fetch(
            "page_incidents",
            list(statuses),
            list(severities),
            list(routes),
            list(kinds),
            list(owners),
            sev,
            first_seen,
            inc_id,
            limit,
        )
        return [IncidentSummary(**r) for r in rows]

    async def page_resolved(
        self,
        *,
        severities: Sequence[str],
        routes: Sequence[str],
        kinds: Sequence[str],
        owners: Sequence[str],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[IncidentSummary]:
        """The status page's resolved incidents, newest first, after the keyset `after` (resolved_at, id)."""
        resolved_at, inc_id = after if after else (None, None)
        rows = await self._fetch(
            "page_resolved", list(severities), list(routes), list(kinds), list(owners), resolved_at, inc_id, limit
        )
        return [IncidentSummary(**r) for r in rows]

    async def page_counts(self) -> list[StatusCount]:
        """Active incidents counted by severity and status."""
        return [StatusCount(**r) for r in await self._fetch("page_counts")]

    async def get_incident(self, incident_id: uuid.UUID) -> IncidentView | None:
        rows = await self._fetch("get_incident", incident_id)
        return IncidentView(**rows[0]) if rows else None

    async def incident_alerts_page(
        self, incident_id: uuid.UUID, *, after: tuple[str, datetime, str] | None, limit: int, max_bytes: int
    ) -> BoundedPage[MemberAlert]:
        """Member alerts, firing first then newest first, after the keyset `after` (status, starts_at,
        fingerprint): at most `limit` and about `max_bytes` of labels and annotations (at least one)."""
        status, starts_at, fingerprint = after if after else (None, None, None)
        rows = await self._fetch(
            "incident_alerts_page", incident_id, status, starts_at, fingerprint, limit + 1, max_bytes
        )
        return _bounded_page(rows, limit, MemberAlert)

    async def incident_events_page(
        self, incident_id: uuid.UUID, *, after: int | None, limit: int, max_bytes: int, newest_first: bool = False
    ) -> BoundedPage[TimelineEvent]:
        """Timeline events past the event id `after` (in the chosen direction), bounded like the alerts."""
        if newest_first:
            rows = await self._fetch(
                "incident_events_page_desc",
                incident_id,
                after if after is not None else 2**63 - 1,
                limit + 1,
                max_bytes,
            )
        else:
            rows = await self._fetch("incident_events_page", incident_id, after or 0, limit + 1, max_bytes)
        return _bounded_page(rows, limit, TimelineEvent)

    async def incident_event_count(self, incident_id: uuid.UUID) -> int:
        rows = await self._fetch("incident_event_count", incident_id)
        return int(rows[0][0])

    async def incident_common_labels(self, incident_id: uuid.UUID) -> dict[str, str]:
        """The labels every member alert of the incident shares."""
        return {r["key"]: r["value"] for r in await self._fetch("incident_common_labels", incident_id)}

    async def applied_migrations(self) -> set[str]:
        return {r["migration_id"] for r in await self._fetch("applied_migrations")}

    async def active_incidents(self, *, by_route: bool) -> ActiveIncidents:
        """The active incidents counted for the metrics, in one scan; by route too when asked."""
        rows = await self._fetch("active_incidents_by_route" if by_route else "active_incidents")
        return ActiveIncidents(
            by_state=tuple(
                ActiveCount(r["status"], r["severity"], r["kind"], r["n"], r["oldest_open"])
                for r in rows
                if r["status"] is not None
            ),
            # the (route) grouping set's rows: every other column is NULL
            by_route={r["route"]: r["n"] for r in rows if r["status"] is None},
        )

    # --- heartbeats (receiver/heartbeats.py) ----------------------------------------------------------

    async def register_heartbeats(self, now: datetime, graces: dict[str, float]) -> None:
        """At start: a row for each configured heartbeat (name -> grace in seconds); see the query."""
        await self._execute("register_heartbeats", now, list(graces), list(graces.values()))

    async def record_pings(self, now: datetime, pings: Sequence[dict[str, Any]]) -> dict[str, datetime | None]:
        """Pings ({name, sender, labels}, one per heartbeat) that arrived at `now`; name -> its missed_at."""
        rows = await self._fetch("record_pings", now, _dumps(list(pings)))
        return {r["name"]: r["missed_at"] for r in rows}

    async def check_heartbeats(self, now: datetime, names: Sequence[str]) -> list[HeartbeatState]:
        """The heartbeats' state for a check at `now`, which it records (the start-up rule reads it)."""
        return [HeartbeatState(**r) for r in await self._fetch("check_heartbeats", now, list(names))]

    async def heartbeats(self, names: Sequence[str]) -> list[HeartbeatState]:
        return [HeartbeatState(**r) for r in await self._fetch("heartbeats", list(names))]

    async def mark_heartbeat(
        self,
        now: datetime,
        name: str,
        missed_at: datetime | None,
        missed_since: datetime | None = None,
        *,
        clear: bool = False,
    ) -> None:
        """Heartbeat `name` missed the deadline `missed_at` (silent since `missed_since`), or its alert was
        ingested again (no `missed_since`), or with `clear` it pinged again and its alert was resolved."""
        if clear:
            await self._execute("clear_heartbeat_missed", name, missed_at)
        elif missed_since is None:
            await self._execute("assert_heartbeat_missed", now, name, missed_at)
        else:
            await self._execute("mark_heartbeat_missed", now, name, missed_at, missed_since)

    async def append_event(
        self, incident_id: uuid.UUID, now: datetime, event_type: str, actor: str, detail: dict[str, Any]
    ) -> None:
        """One more event on an incident's timeline."""
        await self._execute("insert_event", incident_id, now, event_type, actor, detail)

    # --- reconciliation with Alertmanager (receiver/reconcile.py) ----------------------------------

    async def claim_reconcile_lease(
        self, name: str, holder: str, now: datetime, *, lease: timedelta, interval: timedelta
    ) -> bool:
        """Take the lease `name` until now + lease, if it is free and its last run started an interval ago."""
        return bool(await self._fetch("claim_reconcile_lease", name, holder, now, now + lease, now - interval))

    async def release_reconcile_lease(self, name: str, holder: str, now: datetime) -> None:
        await self._execute("release_reconcile_lease", name, holder, now)

    async def reconcile_members(self) -> list[ReconcileMember]:
        """Every firing member of every active incident."""
        return [ReconcileMember(**r) for r in await self._fetch("reconcile_members")]

    async def reconcile_member_alerts(self, members: Sequence[tuple[uuid.UUID, str]]) -> list[Alert]:
        """The stored alerts of members (incident id, fingerprint), as firing alerts of their instance."""
        rows = await self._fetch("reconcile_member_alerts", [m[0] for m in members], [m[1] for m in members])
        return [
            Alert(
                index=i,
                fingerprint=r["fingerprint"],
                status=AlertStatus.FIRING,
                labels=r["labels"],
                annotations=r["annotations"],
                starts_at=r["starts_at"],
                ends_at=None,
                generator_url=r["generator_url"],
            )
            for i, r in enumerate(rows)
        ]

    async def mark_absence(
        self, now: datetime, *, absent: Sequence[tuple[uuid.UUID, str]], present: Sequence[tuple[uuid.UUID, str]]
    ) -> None:
        """Members (incident id, fingerprint) no peer listed become absent since now (unless already); members
        listed again are no longer absent."""
        await self._execute(
            "mark_absence",
            now,
            [a[0] for a in absent],
            [a[1] for a in absent],
            [p[0] for p in present],
            [p[1] for p in present],
        )

    async def unseen_instances(self, instances: Sequence[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
        """Of the (fingerprint, startsAt) instances, those no member is (or was, but for an inferred resolve)."""
        rows = await self._fetch("unseen_instances", [i[0] for i in instances], [i[1] for i in instances])
        return {(r["fingerprint"], r["starts_at"]) for r in rows}

    async def set_suppressed(
        self, now: datetime, changes: Sequence[tuple[uuid.UUID, dict[str, Any] | None]], *, actor: str
    ) -> list[tuple[uuid.UUID, str]]:
        """Record Alertmanager's suppression of incidents where it changed; (incident id, event type) written."""
        rows = await self._fetch(
            "set_suppressed", now, _dumps([{"id": str(i), "suppressed": sup} for i, sup in changes]), actor
        )
        return [(r["incident_id"], r["type"]) for r in rows]

    async def ping(self) -> None:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval(QUERIES["ping"])
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def _execute(self, name: str, *args: Any) -> None:
        try:
            await self.pool.execute(QUERIES[name], *args)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def _fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self.pool.fetch(QUERIES[name], *args)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e


def key_chunks(alerts: list[Alert], mappings: dict[str, Mapping], size: int) -> list[tuple[list[Alert], list[str]]]:
    """The alerts cut into chunks of at most `size` incident keys (sorted, as the locks are taken), every
    alert of a key in the same chunk.

    A chunk is correct on its own: all the alerts of a key are planned together (so a payload that resolves
    one member and fires another never flaps its incident), its keys are locked for its transaction, and it
    reads the state after the previous chunk committed. A failure answers 5xx and Alertmanager sends the whole
    webhook again; ingest is idempotent, so the chunks already committed count the retry as duplicates.
    """
    by_key: dict[str, list[Alert]] = {}
    for a in alerts:
        by_key.setdefault(mappings[a.fingerprint].incident_key, []).append(a)
    keys = sorted(by_key)
    return [([a for k in keys[i : i + size] for a in by_key[k]], keys[i : i + size]) for i in range(0, len(keys), size)]


def webhook_chunks(
    alerts: list[Alert],
    mappings: dict[str, Mapping],
    now: datetime,
    *,
    reopen_window_start: datetime,
    external_url: str = "",
    owner_snapshot: Callable[[str], dict[str, Any]] = lambda name: {"name": name},
    actor: str = correlation.ACTOR,
    event_detail: dict[str, Any] | None = None,
) -> list[correlation.Webhook]:
    """One webhook's (deduplicated) alerts as correlation.Webhooks, one per key chunk (see key_chunks): what
    Store.ingest writes, and what the Ingestor queues for group commit, one after the other."""
    return [
        correlation.Webhook(
            chunk,
            mappings,
            now,
            reopen_window_start,
            external_url=external_url,
            owner_snapshot=owner_snapshot,
            actor=actor,
            event_detail=event_detail,
        )
        for chunk, _keys in key_chunks(alerts, mappings, MAX_KEYS_PER_TRANSACTION)
    ]


def _state(rows: Sequence[asyncpg.Record]) -> correlation.State:
    state = correlation.State(active={}, reopenable={}, incidents={}, members={})
    for r in rows:
        for fingerprint, status, starts_at, resolved_by in zip(
            r["member_fingerprints"], r["member_statuses"], r["member_starts"], r["member_resolvers"], strict=True
        ):
            state.members[fingerprint] = correlation.MemberState(fingerprint, r["id"], status, starts_at, resolved_by)
        inc = correlation.IncidentState(
            id=r["id"],
            incident_key=r["incident_key"],
            status=r["status"],
            severity=r["severity"],
            metadata=dict(r["metadata"] or {}),
            firing=set(r["firing"]),
            flap_count=r["flap_count"],
            resolved_at=r["resolved_at"],
            kind=r["kind"],
            first_seen=r["first_seen"],
            # `firing` names the batch's fingerprints only: the others that fire are counted
            firing_elsewhere=r["firing_count"] > len(r["firing"]),
        )
        state.incidents[inc.id] = inc
        if inc.status != "resolved":
            state.active[inc.incident_key] = inc
        elif r["reopenable"]:
            state.reopenable[inc.incident_key] = inc
    for key in list(state.reopenable):
        if key in state.active:
            del state.reopenable[key]
    return state


class _PlanRecords(NamedTuple):
    """A correlation plan as apply_ingest's JSON record sets, each the text of a JSON array: new incidents,
    changes, members, events, and the incidents to send resolve notices for. Each record names its fields as
    the query's column definitions do, its webhook's time (`at`) among them."""

    new_incidents: str
    changes: str
    members: str
    events: str
    resolve_notices: str


_ApplyArgs = tuple[str, str, str, str, str]  # apply_ingest's $1-$5


def _apply_statements(
    plans: Sequence[correlation.Plan], records: Sequence[_PlanRecords], webhook_keys: Sequence[AbstractSet[str]]
) -> list[_ApplyArgs]:
    """apply_ingest's arguments for a batch's plans, in order: consecutive plans that share no incident key
    and write no incident in common go in one statement. Within a statement no row is written twice, which
    its CTEs need (they do not see each other's rows); a plan that touches what an earlier one of its run
    wrote starts the next statement, which sees it."""
    if len(records) == 1:
        r = records[0]
        return [(r.new_incidents, r.changes, r.members, r.events, r.resolve_notices)]
    runs: list[list[_PlanRecords]] = []
    taken_keys: set[str] = set()
    taken_ids: set[uuid.UUID] = set()
    for plan, record, keys in zip(plans, records, webhook_keys, strict=True):
        ids = _written_incidents(plan)
        if not runs or not taken_keys.isdisjoint(keys) or not taken_ids.isdisjoint(ids):
            runs.append([])
            taken_keys, taken_ids = set(), set()
        runs[-1].append(record)
        taken_keys |= keys
        taken_ids |= ids
    return [
        (
            _join_arrays([r.new_incidents for r in run]),
            _join_arrays([r.changes for r in run]),
            _join_arrays([r.members for r in run]),
            _join_arrays([r.events for r in run]),
            _join_arrays([r.resolve_notices for r in run]),
        )
        for run in runs
    ]


def _written_incidents(plan: correlation.Plan) -> set[uuid.UUID]:
    ids = {x.id for x in plan.new_incidents}
    ids.update(plan.changes)
    ids.update(m.incident_id for m in plan.members)
    ids.update(e.incident_id for e in plan.events)
    return ids


def _join_arrays(texts: Sequence[str]) -> str:
    """JSON arrays' texts as one array's text, in order."""
    return "[" + ",".join(t[1:-1] for t in texts if t != "[]") + "]"


class _IdText(dict[uuid.UUID, str]):
    """str(incident id), each made once: a webhook's members and events name few incidents, and UUID.__str__
    is Python code (~0.35 us) where a lookup costs a tenth of that."""

    def __missing__(self, key: uuid.UUID) -> str:
        text = self[key] = str(key)
        return text


def _plan_records(
    plan: correlation.Plan, now: datetime, notice_severities: frozenset[str], source: str | None = None
) -> _PlanRecords:
    changes = list(plan.changes.values())
    ids = _IdText()
    at = now.isoformat()
    return _PlanRecords(
        new_incidents=_dumps_records(
            [
                {
                    "id": ids[x.id],
                    "incident_key": x.incident_key,
                    "route": x.route,
                    "kind": x.kind,
                    "severity": x.severity,
                    "owner": x.owner,
                    "metadata": x.metadata,
                    "mapping_rule": x.mapping_rule,
                    "at": at,
                }
                for x in plan.new_incidents
            ]
        ),
        changes=_dumps_records(
            [
                {
                    "id": ids[x.id],
                    "severity": x.severity,
                    "status": x.status,
                    "metadata": x.metadata,
                    "flap_count": x.flap_count,
                    "reopened": x.reopened,
                    "rearm": x.rearm,
                    "clear_ack": x.clear_ack,
                    "resolved_by": x.resolved_by,
                    "at": at,
                }
                for x in changes
            ]
        ),
        # one JSON array: for a webhook of many alerts, cheaper to build than eight arrays of parameters
        members=_dumps_records(
            [
                {
                    "incident_id": ids[x.incident_id],
                    "fingerprint": x.alert.fingerprint,
                    "status": x.status,
                    "labels": x.alert.labels,
                    "annotations": x.alert.annotations,
                    "starts_at": x.alert.starts_at.isoformat(),
                    "ends_at": x.ends_at.isoformat() if x.ends_at is not None else None,
                    "generator_url": x.alert.generator_url,
                    "resolved_by": x.resolved_by,
                    "source": source,
                    "at": at,
                }
                for x in plan.members
            ]
        ),
        events=_dumps_records(
            [
                {"incident_id": ids[x.incident_id], "type": x.type, "actor": x.actor, "detail": x.detail, "at": at}
                for x in plan.events
            ]
        ),
        resolve_notices=_dumps_records(
            [{"id": ids[x.id], "at": at} for x in changes if x.resolved and x.severity in notice_severities]
        ),
    )


def _escalation_records(plans: Sequence[Escalation]) -> tuple[str, str, str]:
    """Escalation plans as apply_escalations' JSON record sets: levels and timers, outbox items, events."""
    levels: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for e in plans:
        incident_id = str(e.incident_id)
        levels.append(
            {"id": incident_id, "level": e.level, "next_at": e.next_at.isoformat() if e.next_at is not None else None}
        )
        outbox.extend(
            {
                "incident_id": incident_id,
                "notification_key": e.notification_key,
                "level": e.level,
                "target": t.id,
                "target_type": t.type,
                "url": t.url,
            }
            for t in e.targets
        )
        if e.level > e.from_level:
            events.append(
                {
                    "incident_id": incident_id,
                    "type": "escalated",
                    "detail": {
                        "from_level": e.from_level,
                        "to_level": e.level,
                        "targets": e.target_ids,
                        "skipped_levels": max(0, e.level - e.from_level - 1),
                    },
                }
            )
        elif e.level == 0 and e.targets:
            events.append(
                {"incident_id": incident_id, "type": "paged", "detail": {"level": 0, "targets": e.target_ids}}
            )
    return _dumps(levels), _dumps(outbox), _dumps(events)


def _due_incident(r: asyncpg.Record) -> DueIncident:
    # the owner snapshot's JSON shape is the store's to know (see Ingestor.owner_snapshot)
    targets = (r["owner"] or {}).get("targets") or []
    return DueIncident(
        id=r["id"],
        severity=r["severity"],
        escalation_level=r["escalation_level"],
        escalation_anchor_at=r["escalation_anchor_at"],
        escalation_cycle=r["escalation_cycle"],
        owner_targets=tuple(Target(t["id"], t["type"], t["url"]) for t in targets),
    )


def _json_record(value: Any) -> dict[str, Any]:
    """A frozen store type as one JSON record: every field by name, times in ISO 8601, ids as text."""
    record = as_dict(value)
    for name, v in record.items():
        if isinstance(v, datetime):
            record[name] = v.isoformat()
        elif isinstance(v, uuid.UUID):
            record[name] = str(v)
    return record


R = TypeVar("R", MemberAlert, TimelineEvent)


def _bounded_page(rows: Sequence[asyncpg.Record], limit: int, cls: type[R]) -> BoundedPage[R]:
    """A page from up to `limit` + 1 rows of a bounded query, whose rows carry `fetched` (rows read before the
    byte bound: more than kept means a next page) and `page_bytes` (the running total of their size)."""
    kept = rows[:limit]
    return BoundedPage(
        items=[cls(**{k: v for k, v in r.items() if k not in ("fetched", "page_bytes")}) for r in kept],
        more=bool(rows) and rows[0]["fetched"] > len(kept),
        bytes=int(kept[-1]["page_bytes"] or 0) if kept else 0,
    )


def _outbox_item(r: asyncpg.Record) -> OutboxItem:
    return OutboxItem(
        id=r["id"],
        incident_id=r["incident_id"],
        notification_key=r["notification_key"],
        level=r["level"],
        target=r["target"],
        target_type=r["target_type"],
        destination=r["url"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        incident_key=r["incident_key"],
        route=r["route"],
        kind=r["kind"],
        severity=r["severity"],
        status=r["status"],
        first_seen=r["first_seen"],
        resolved_at=r["resolved_at"],
        acknowledged_by=r["acknowledged_by"],
        owner_name=r["owner_name"] or "",
        metadata=dict(r["metadata"] or {}),
        firing_count=r["firing_count"],
        alert_count=r["alert_count"],
    )
