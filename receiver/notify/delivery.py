"""Delivering the outbox: lease due rows, send them concurrently, record every outcome on the timeline.

A leased row is invisible to other replicas until its lease ends, so no two replicas send it. The
lease outlives the HTTP timeout; only a crash between Slack's 2xx and our commit can repeat a page.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ..config import Config
from ..store import Store
from . import SendResult, send
from .messages import Context, slack_message, webhook_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    id: int
    incident_id: uuid.UUID
    target: str
    target_type: str
    key: str
    result: SendResult
    status: str  # delivered | pending | failed
    seconds: float


def backoff(config: Config, attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Exponential backoff with jitter: initial * 2^(attempts-1), capped, times 0.5 to 1.5."""
    d = config.delivery
    base = min(d.initial_backoff.total_seconds() * 2 ** max(attempts - 1, 0), d.max_backoff.total_seconds())
    return timedelta(seconds=base * (0.5 + rng()))


class Deliverer:
    def __init__(
        self,
        config: Config,
        store: Store,
        session: aiohttp.ClientSession,
        links: Callable[[uuid.UUID, datetime], tuple[str | None, str | None]] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ):
        self.config = config
        self.store = store
        self.session = session
        self.links = links or (lambda incident_id, now: (None, None))
        self.on_delivery = on_delivery

    async def deliver(self, now: datetime) -> list[Delivery]:
        d = self.config.delivery
        lease = d.timeout * 2 + timedelta(seconds=30)
        rows = await self.store.claim_notifications(now, batch=d.batch_size, lease=lease)
        if not rows:
            return []
        deliveries = await asyncio.gather(*(self._send(row, now) for row in rows))
        outcomes: list[tuple[int, str, datetime | None, str | None]] = []
        events: list[tuple[uuid.UUID, str, dict[str, Any]]] = []
        for dv, row in zip(deliveries, rows, strict=True):
            detail = {"target": dv.target, "notification": dv.key, "attempt": row["attempts"]}
            if dv.status == "delivered":
                outcomes.append((dv.id, "delivered", None, None))
                events.append((dv.incident_id, "notified", detail))
            elif dv.status == "failed":
                outcomes.append((dv.id, "failed", None, dv.result.error))
                events.append((dv.incident_id, "notify_failed", {**detail, "error": dv.result.error}))
            else:
                wait = dv.result.retry_after if dv.result.retry_after is not None else backoff(
                    self.config, row["attempts"])
                outcomes.append((dv.id, "pending", now + wait, dv.result.error))
                events.append((dv.incident_id, "notify_retry",
                               {**detail, "error": dv.result.error, "retry_in_seconds": round(wait.total_seconds())}))
        await self.store.record_deliveries(now, outcomes, events)
        if self.on_delivery:
            for dv in deliveries:
                self.on_delivery(dv)
        return list(deliveries)

    async def _send(self, row: Any, now: datetime) -> Delivery:
        d = self.config.delivery
        ctx = self._context(row, now)
        message = slack_message(ctx) if row["target_type"] == "slack" else webhook_message(ctx)
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await send(self.session, row["url"], message, d.timeout.total_seconds(), now)
        seconds = loop.time() - started
        if result.delivered:
            status = "delivered"
        elif not result.retry:
            status = "failed"
        else:
            wait = result.retry_after if result.retry_after is not None else timedelta(0)
            too_old = now + min(wait, d.max_retry_after) - row["created_at"] > d.max_age
            status = "failed" if too_old or wait > d.max_retry_after else "pending"
        if status != "delivered":
            log.warning("notification %s for incident %s to %s: %s (%s)", row["notification_key"],
                        row["incident_id"], row["target"], result.error, status)
        return Delivery(row["id"], row["incident_id"], row["target"], row["target_type"], row["notification_key"],
                        result, status, seconds)

    def _context(self, row: Any, now: datetime) -> Context:
        key: str = row["notification_key"]
        event = "resolved" if key.endswith(":resolve") else ("opened" if row["level"] == 0 else "escalated")
        incident_url, ack_url = self.links(row["incident_id"], now)
        return Context(
            incident_id=str(row["incident_id"]),
            incident_key=row["incident_key"],
            route=row["route"],
            kind=row["kind"],
            severity=row["severity"],
            status=row["status"],
            owner=row["owner_name"] or "",
            level=max(row["level"], 0),
            event=event,
            first_seen=row["first_seen"],
            resolved_at=row["resolved_at"],
            firing=row["firing_count"],
            total=row["alert_count"],
            metadata=row["metadata"] or {},
            now=now,
            incident_url=incident_url,
            ack_url=ack_url,
        )
