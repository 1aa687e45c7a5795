"""The store: the only place that talks SQL. Named queries live in queries.sql, loaded once.

Methods are named for intent and work on batches; driver errors become StoreUnavailable, which the
web layer answers with 503 so that Alertmanager retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from .. import correlation
from ..model import Alert
from ..rules import Mapping


class StoreError(Exception):
    """A database error."""


class StoreUnavailable(StoreError):
    """The database is unavailable or the transaction failed; the work can be retried."""


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

# one encoder for every call: json.dumps with options builds a new one each time
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Each incident key costs its transaction one advisory lock, and PostgreSQL's lock table is shared and small
# (max_locks_per_transaction x connections: 64 x ~120 by default). A webhook with more keys than this is
# written in several transactions, each committed before the next begins (see _key_chunks), so whatever
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
    ) -> correlation.Plan:
        """Correlate one webhook's alerts: lock keys, read state, plan, write; one transaction per chunk of at
        most MAX_KEYS_PER_TRANSACTION incident keys (one, for any webhook Alertmanager usually sends)."""
        alerts = correlation.dedupe(alerts)
        plan = correlation.Plan()
        for chunk, keys in _key_chunks(alerts, mappings, MAX_KEYS_PER_TRANSACTION):
            # the slot is taken per chunk, so other webhooks go in between the chunks of a huge one
            async with self._ingest_slots or contextlib.nullcontext():
                plan.merge(await self._ingest(chunk, mappings, keys, [a.fingerprint for a in chunk], now,
                                              reopen_window_start, external_url, owner_snapshot,
                                              resolve_notice_severities))
        return plan

    async def _ingest(
        self,
        alerts: list[Alert],
        mappings: dict[str, Mapping],
        keys: list[str],
        fingerprints: list[str],
        now: datetime,
        reopen_window_start: datetime,
        external_url: str,
        owner_snapshot: Callable[[str], dict[str, Any]],
        resolve_notice_severities: frozenset[str],
    ) -> correlation.Plan:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(QUERIES["ingest_state"], keys, fingerprints, reopen_window_start)

                def plan_and_args() -> tuple[correlation.Plan, list[Any]]:
                    plan = correlation.plan(alerts, mappings, _state(rows), now, external_url=external_url,
                                            owner_snapshot=owner_snapshot)
                    return plan, _apply_args(plan, now, resolve_notice_severities)

                if len(alerts) > OFF_LOOP_ALERTS:
                    # pure CPU, ~13 us an alert: a 20,000-alert webhook would hold the loop for ~0.25 s
                    plan, args = await asyncio.get_running_loop().run_in_executor(None, plan_and_args)
                else:
                    plan, args = plan_and_args()
                await conn.execute(QUERIES["apply_ingest"], *args)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e
        return plan

    # --- escalation ----------------------------------------------------------------------------

    async def tick_timers(
        self,
        now: datetime,
        *,
        stale_before: datetime,
        ack_before: datetime | None,
        stale_after_seconds: int,
        notice_severities: Sequence[str],
        batch: int,
    ) -> asyncpg.Record:
        rows = await self._fetch(
            "tick_timers", now, stale_before, ack_before, batch, stale_after_seconds, list(notice_severities)
        )
        return rows[0]

    async def escalate(self, now: datetime, decide: Callable[[Sequence[asyncpg.Record]], list[Any]],
                       *, batch: int) -> list[Any]:
        """Claim due incidents (SKIP LOCKED), let `decide` plan them, write levels, outbox rows, events."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(QUERIES["claim_escalations"], now, batch)
                if not rows:
                    return []
                plans = decide(rows)
                events: list[tuple[uuid.UUID, str, str]] = []
                outbox: list[tuple[uuid.UUID, str, int, str, str, str]] = []
                for e in plans:
                    for key, target, target_type, url in e.notifications:
                        outbox.append((e.incident_id, key, e.level, target, target_type, url))
                    if e.level > e.from_level:
                        events.append((e.incident_id, "escalated", _dumps(
                            {"from_level": e.from_level, "to_level": e.level, "targets": e.targets,
                             "skipped_levels": max(0, e.level - e.from_level - 1)})))
                    elif e.level == 0 and e.targets:
                        events.append((e.incident_id, "paged", _dumps({"level": 0, "targets": e.targets})))
                await conn.execute(
                    QUERIES["apply_escalations"],
                    now,
                    [e.incident_id for e in plans],
                    [e.level for e in plans],
                    [e.next_at for e in plans],
                    *[list(col) for col in zip(*outbox, strict=True)] if outbox else [[]] * 6,
                    *[list(col) for col in zip(*events, strict=True)] if events else [[]] * 3,
                )
                return plans
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def claim_notifications(self, now: datetime, *, batch: int, lease: timedelta) -> list[asyncpg.Record]:
        return await self._fetch("claim_notifications", now, batch, lease)

    async def record_deliveries(
        self,
        now: datetime,
        outcomes: Sequence[tuple[int, int, str, datetime | None, str | None]],
        events: Sequence[tuple[uuid.UUID, str, dict[str, Any]]],
    ) -> int:
        """Write (id, attempt, status, next attempt, error) outcomes, each only if `attempt` still holds the
        row's lease, and the events. Returns how many outcomes were written."""
        rows = await self._fetch(
            "record_deliveries",
            now,
            [o[0] for o in outcomes],
            [o[1] for o in outcomes],
            [o[2] for o in outcomes],
            [o[3] for o in outcomes],
            [o[4] for o in outcomes],
            [e[0] for e in events],
            [e[1] for e in events],
            [_dumps(e[2]) for e in events],
        )
        return int(rows[0]["recorded"])

    # --- lifecycle --------------------------------------------------------------------------------

    async def transition(
        self,
        incident_id: uuid.UUID,
        change: Callable[[asyncpg.Record], tuple[dict[str, Any], str, dict[str, Any]]],
        *,
        actor: str,
        now: datetime,
        notify_resolved: Callable[[asyncpg.Record], bool] = lambda row: False,
        link_signature: str | None = None,
    ) -> tuple[asyncpg.Record, asyncpg.Record] | None:
        """Lock one incident, compute its new state with `change` (which may raise), write it and its event.
        Returns (before, after), or None for an unknown incident. With `link_signature`, the signed link is
        spent in the same transaction (LinkAlreadyUsed when it was spent before): an action that fails
        leaves the link unused."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                before = await conn.fetchrow(QUERIES["lock_incident"], incident_id)
                if before is None:
                    return None
                if link_signature is not None and await conn.fetchval(QUERIES["use_link"], link_signature,
                                                                      now) is None:
                    raise LinkAlreadyUsed()
                values, event_type, detail = change(before)
                row = {**dict(before), **values}
                await conn.execute(
                    QUERIES["update_lifecycle"], incident_id, row["status"], row["acknowledged_by"],
                    row["acknowledged_at"], row["resolved_at"], row["resolved_by"], row["silenced_until"],
                    row["silenced_at"], row["silenced_by"], row["silence_reason"], row["status_before_silence"],
                    row["escalation_anchor_at"], row["next_escalation_at"],
                )
                # a jsonb parameter goes through the connection's JSON codec: pass the dict itself
                await conn.execute(QUERIES["insert_event"], incident_id, now, event_type, actor, detail)
                if row["status"] == "resolved" and notify_resolved(before):
                    await conn.execute(QUERIES["queue_resolve_notices"], incident_id, now)
                after = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
                return before, after
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError) as e:
            raise StoreUnavailable(type(e).__name__) from e

    async def link_secret(self, candidate: str) -> str:
        rows = await self._fetch("link_secret", candidate)
        return str(rows[0]["value"])

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
    ) -> list[asyncpg.Record]:
        first_seen, inc_id = after if after else (None, None)
        return await self._fetch(
            "list_incidents", list(statuses), list(routes), list(kinds), list(severities), first_seen, inc_id, limit
        )

    async def page_incidents(self, *, statuses: Sequence[str], severities: Sequence[str], routes: Sequence[str],
                             kinds: Sequence[str], owners: Sequence[str],
                             after: tuple[str, datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
        sev, first_seen, inc_id = after if after else (None, None, None)
        return await self._fetch("page_incidents", list(statuses), list(severities), list(routes), list(kinds),
                                 list(owners), sev, first_seen, inc_id, limit)

    async def page_resolved(self, *, severities: Sequence[str], routes: Sequence[str], kinds: Sequence[str],
                            owners: Sequence[str], after: tuple[datetime, uuid.UUID] | None,
                            limit: int) -> list[asyncpg.Record]:
        resolved_at, inc_id = after if after else (None, None)
        return await self._fetch("page_resolved", list(severities), list(routes), list(kinds), list(owners),
                                 resolved_at, inc_id, limit)

    async def page_counts(self) -> list[asyncpg.Record]:
        return await self._fetch("page_counts")

    async def get_incident(self, incident_id: uuid.UUID) -> asyncpg.Record | None:
        rows = await self._fetch("get_incident", incident_id)
        return rows[0] if rows else None

    async def incident_alerts_page(self, incident_id: uuid.UUID, *, after: tuple[str, datetime, str] | None,
                                   limit: int, max_bytes: int) -> list[asyncpg.Record]:
        """Member alerts, firing first then newest first, after the keyset `after` (status, starts_at,
        fingerprint): at most `limit` rows and about `max_bytes` of labels and annotations (at least one row).
        Each row's `page_bytes` is the running total of the page."""
        status, starts_at, fingerprint = after if after else (None, None, None)
        return await self._fetch("incident_alerts_page", incident_id, status, starts_at, fingerprint, limit,
                                 max_bytes)

    async def incident_events_page(self, incident_id: uuid.UUID, *, after: int | None, limit: int, max_bytes: int,
                                   newest_first: bool = False) -> list[asyncpg.Record]:
        """Timeline events past the event id `after` (in the chosen direction), bounded like the alerts."""
        if newest_first:
            return await self._fetch("incident_events_page_desc", incident_id,
                                     after if after is not None else 2**63 - 1, limit, max_bytes)
        return await self._fetch("incident_events_page", incident_id, after or 0, limit, max_bytes)

    async def incident_event_count(self, incident_id: uuid.UUID) -> int:
        rows = await self._fetch("incident_event_count", incident_id)
        return int(rows[0][0])

    async def incident_common_labels(self, incident_id: uuid.UUID) -> dict[str, str]:
        """The labels every member alert of the incident shares."""
        return {r["key"]: r["value"] for r in await self._fetch("incident_common_labels", incident_id)}

    async def applied_migrations(self) -> set[str]:
        return {r["migration_id"] for r in await self._fetch("applied_migrations")}

    async def ping(self) -> None:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
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


def _key_chunks(alerts: list[Alert], mappings: dict[str, Mapping],
                size: int) -> list[tuple[list[Alert], list[str]]]:
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
    return [
        ([a for k in keys[i:i + size] for a in by_key[k]], keys[i:i + size])
        for i in range(0, len(keys), size)
    ]


def _state(rows: Sequence[asyncpg.Record]) -> correlation.State:
    state = correlation.State(active={}, reopenable={}, incidents={}, members={})
    for r in rows:
        for fingerprint, status, starts_at in zip(r["member_fingerprints"], r["member_statuses"], r["member_starts"],
                                                  strict=True):
            state.members[fingerprint] = correlation.MemberState(fingerprint, r["id"], status, starts_at)
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


def _apply_args(plan: correlation.Plan, now: datetime, notice_severities: frozenset[str]) -> list[Any]:
    n = plan.new_incidents
    c = list(plan.changes.values())
    m = plan.members
    e = plan.events
    return [
        now,
        [x.id for x in n],
        [x.incident_key for x in n],
        [x.route for x in n],
        [x.kind for x in n],
        [x.severity for x in n],
        [_dumps(x.owner) for x in n],
        [_dumps(x.metadata) for x in n],
        [x.mapping_rule for x in n],
        [x.id for x in c],
        [x.severity for x in c],
        [x.status for x in c],
        [_dumps(x.metadata) for x in c],
        [x.flap_count for x in c],
        [x.reopened for x in c],
        [x.rearm for x in c],
        [x.clear_ack for x in c],
        _dumps([
            {
                "incident_id": str(x.incident_id),
                "fingerprint": x.alert.fingerprint,
                "status": x.status,
                "labels": x.alert.labels,
                "annotations": x.alert.annotations,
                "starts_at": x.alert.starts_at.isoformat(),
                "ends_at": x.ends_at.isoformat() if x.ends_at is not None else None,
                "generator_url": x.alert.generator_url,
            }
            for x in m
        ]),
        [x.incident_id for x in e],
        [x.type for x in e],
        [x.actor for x in e],
        [_dumps(x.detail) for x in e],
        [x.id for x in c if x.resolved and x.severity in notice_severities],
    ]
