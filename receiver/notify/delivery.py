"""Delivering the outbox: lease due rows, send them concurrently, record every outcome on the timeline.

The guarantee is at-least-once. A leased row is invisible to other replicas until its lease ends, and
the lease outlasts the whole attempt (claim, send, record), so no replica sends a row while an attempt
at it is in flight anywhere. A page can still repeat in two cases: an attempt whose outcome is unknown
(the target did not answer within `delivery.timeout`, or dropped the connection after the request went
out: it may have posted the message) is retried after a backoff, and a crash between the target's 2xx and
our commit leaves the row to be retried when its lease ends. Unknown outcomes are on the timeline
(`notify_unknown`) and counted (`receiver_notifications_total{result="unknown"}`).
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
from ..model import DeliveryOutcome, DeliveryStatus, OutboxItem
from ..store import Store
from . import Notifier, SendResult
from .messages import Context
from .registry import NOTIFIERS

log = logging.getLogger(__name__)

# Beyond the attempt itself, the lease covers recording its outcome and clocks of replicas that disagree.
LEASE_MARGIN = timedelta(seconds=30)


def lease_for(config: Config) -> timedelta:
    """How long a claimed row stays invisible to other replicas. Sending starts within `claim_budget` of
    the claim (or the rows go back untried) and ends within `timeout` (a hard bound), so an attempt is
    over at least half the margin before its lease ends."""
    return config.delivery.timeout * 2 + LEASE_MARGIN


def claim_budget(config: Config) -> timedelta:
    """The longest a claim may take before its rows are sent: beyond this they go back untried."""
    return config.delivery.timeout + LEASE_MARGIN / 2


@dataclass(frozen=True)
class Delivery:
    id: int
    incident_id: uuid.UUID
    target: str
    target_type: str
    key: str
    result: SendResult
    status: DeliveryStatus
    seconds: float

    @property
    def metric_result(self) -> str:
        """The `result` label of receiver_notifications_total for this attempt."""
        if self.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
            return str(self.status)
        return "unknown" if self.result.unknown else "retried"


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
        self.notifiers: dict[str, Notifier[Any]] = {name: cls(session) for name, cls in NOTIFIERS.items()}

    async def deliver(self, now: datetime) -> list[Delivery]:
        d = self.config.delivery
        loop = asyncio.get_running_loop()
        started = loop.time()
        items = await self.store.claim_notifications(now, batch=d.batch_size, lease=lease_for(self.config))
        if not items:
            return []
        if loop.time() - started > claim_budget(self.config).total_seconds():
            # A claim this slow (an overloaded database) could let an attempt outlast its lease: hand the rows
            # back untried rather than risk another replica sending them at the same time.
            log.warning("claiming %d notifications took %.1f s; returned untried", len(items), loop.time() - started)
            await self.store.record_deliveries(
                now,
                [DeliveryOutcome(i.id, i.attempts, DeliveryStatus.PENDING, now, "not sent: slow claim") for i in items],
                [],
            )
            return []
        deliveries = await asyncio.gather(*(self._send(item, now) for item in items))
        outcomes: list[DeliveryOutcome] = []
        events: list[tuple[uuid.UUID, str, dict[str, Any]]] = []
        for dv, item in zip(deliveries, items, strict=True):
            detail: dict[str, Any] = {"target": dv.target, "notification": dv.key, "attempt": item.attempts}
            if dv.result.unknown:
                detail["outcome"] = "unknown: the target may have received it"
            if dv.status == DeliveryStatus.DELIVERED:
                outcomes.append(DeliveryOutcome(dv.id, item.attempts, dv.status))
                events.append((dv.incident_id, "notified", detail))
            elif dv.status == DeliveryStatus.FAILED:
                outcomes.append(DeliveryOutcome(dv.id, item.attempts, dv.status, None, dv.result.error))
                events.append((dv.incident_id, "notify_failed", {**detail, "error": dv.result.error}))
            else:
                wait = (
                    dv.result.retry_after if dv.result.retry_after is not None else backoff(self.config, item.attempts)
                )
                if dv.result.unknown:
                    # a target slower than the timeout gets at least that long again before it sees a retry
                    wait = max(wait, d.timeout)
                outcomes.append(DeliveryOutcome(dv.id, item.attempts, dv.status, now + wait, dv.result.error))
                events.append(
                    (
                        dv.incident_id,
                        "notify_unknown" if dv.result.unknown else "notify_retry",
                        {**detail, "error": dv.result.error, "retry_in_seconds": round(wait.total_seconds())},
                    )
                )
        recorded = await self.store.record_deliveries(now, outcomes, events)
        if recorded < len(outcomes):
            # only possible when recording came after the lease ended and another replica claimed the row
            log.warning(
                "%d of %d delivery outcomes arrived after their lease and were not recorded",
                len(outcomes) - recorded,
                len(outcomes),
            )
        if self.on_delivery:
            for dv in deliveries:
                self.on_delivery(dv)
        return list(deliveries)

    async def _send(self, item: OutboxItem, now: datetime) -> Delivery:
        d = self.config.delivery
        loop = asyncio.get_running_loop()
        started = loop.time()
        notifier = self.notifiers.get(item.target_type)
        if notifier is None:
            # a row written by a version with a channel this one lacks: nothing here can send it
            result = SendResult.failed(f"no channel named {item.target_type!r} in this version")
        else:
            incident_url, ack_url = self.links(item.incident_id, now)
            message = notifier.render(Context.of(item, now, incident_url, ack_url))
            result = await notifier.send(item.destination, message, timeout=d.timeout.total_seconds(), now=now)
        seconds = loop.time() - started
        if result.delivered:
            status = DeliveryStatus.DELIVERED
        elif not result.retry:
            status = DeliveryStatus.FAILED
        else:
            wait = result.retry_after if result.retry_after is not None else timedelta(0)
            too_old = now + min(wait, d.max_retry_after) - item.created_at > d.max_age
            status = DeliveryStatus.FAILED if too_old or wait > d.max_retry_after else DeliveryStatus.PENDING
        if status != DeliveryStatus.DELIVERED:
            log.warning(
                "notification %s for incident %s to %s: %s (%s%s)",
                item.notification_key,
                item.incident_id,
                item.target,
                result.error,
                status,
                "; outcome unknown, the target may have it" if result.unknown else "",
            )
        return Delivery(
            item.id, item.incident_id, item.target, item.target_type, item.notification_key, result, status, seconds
        )
