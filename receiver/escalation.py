"""Escalation: policy arithmetic (pure), `tick(now)` (one pass over due timers), and the loop running it.

An incident's escalation runs in cycles. A cycle starts when it opens, reopens, is re-armed by a
severity raise to critical, or its acknowledgement times out: level 0 (the "opened" page) is due at
once, and level k is due `offset(k)` after the cycle's anchor. `next_escalation_at` always holds when
the next unsent level is due, so a tick only looks at incidents whose timer has passed (an index probe).
After downtime an incident jumps straight to the level it should be at, with one notification.
Acknowledging or silencing pauses a cycle; resuming shifts its timers by the pause, so escalation
continues from where it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .config import Config, Policy
from .model import DueIncident, Escalation, Severity, StaleResolved, Target
from .store import Store, StoreUnavailable
from .timeutil import utcnow

log = logging.getLogger(__name__)


def level_offsets(policy: Policy) -> list[timedelta]:
    """offset[k]: how long after the cycle's anchor level k is due. Level 0 is the opening page."""
    offsets = [timedelta(0)] + [s.after for s in policy.steps]
    if policy.steps and policy.repeat_every:
        last = policy.steps[-1].after
        offsets += [last + policy.repeat_every * r for r in range(1, policy.repeat_max + 1)]
    return offsets


def level_targets(policy: Policy, level: int) -> tuple[str, ...]:
    """Owner names to notify at a level; "owner" is the incident's own owner."""
    if level == 0:
        return ("owner",) if policy.notify_on_open else ()
    if level <= len(policy.steps):
        return policy.steps[level - 1].notify
    return policy.steps[-1].notify if policy.steps else ()


def due_level(policy: Policy, anchor: datetime, now: datetime) -> int:
    offsets = level_offsets(policy)
    level = 0
    for k, offset in enumerate(offsets):
        if anchor + offset <= now:
            level = k
    return level


def next_due(policy: Policy, anchor: datetime, level: int) -> datetime | None:
    offsets = level_offsets(policy)
    return anchor + offsets[level + 1] if level + 1 < len(offsets) else None


def plan_escalation(due: DueIncident, policy: Policy, config: Config, now: datetime) -> Escalation:
    """What one due incident does now: the level it should be at and whom to notify."""
    level = max(due.escalation_level, due_level(policy, due.escalation_anchor_at, now))
    targets: list[Target] = []
    seen: set[str] = set()
    for name in level_targets(policy, level):
        if name == "owner":
            candidates: Sequence[Target] = due.owner_targets
        else:
            candidates = [Target(t.id, t.type, t.url.value) for t in config.owner(name).targets]
        for target in candidates:
            if target.id not in seen:
                seen.add(target.id)
                targets.append(target)
    return Escalation(
        incident_id=due.id,
        from_level=due.escalation_level,
        level=level,
        next_at=next_due(policy, due.escalation_anchor_at, level),
        notification_key=f"c{due.escalation_cycle}:l{level}",
        targets=tuple(targets),
    )


@dataclass
class TickResult:
    unsilenced: int = 0
    ack_timeouts: int = 0
    stale_resolved: list[StaleResolved] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    queries: int = 0
    delivery_due: bool = False


class Escalator:
    """Runs `tick(now)`: silences that expired, acknowledgements that timed out, stale incidents,
    then due escalations. Every replica runs it; `FOR UPDATE SKIP LOCKED` keeps them apart."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store

    async def tick(self, now: datetime) -> TickResult:
        cfg = self.config
        ack_before = now - cfg.escalation.ack_timeout if cfg.escalation.ack_timeout else None
        timers = await self.store.tick_timers(
            now,
            stale_before=now - cfg.correlation.stale_after,
            ack_before=ack_before,
            stale_after_seconds=int(cfg.correlation.stale_after.total_seconds()),
            notice_severities=cfg.escalation.resolve_notice_severities,
            batch=500,
        )
        result = TickResult(
            unsilenced=timers.unsilenced,
            ack_timeouts=timers.ack_timeouts,
            stale_resolved=list(timers.stale_resolved),
            queries=1,
            delivery_due=timers.delivery_due,
        )
        if not timers.escalation_due:
            return result

        def decide(due: Sequence[DueIncident]) -> list[Escalation]:
            policies = cfg.escalation.policies
            return [plan_escalation(d, policies.get(d.severity) or policies[Severity.WARNING], cfg, now) for d in due]

        result.escalations = await self.store.escalate(now, decide, batch=500)
        result.queries += 4
        if any(e.targets for e in result.escalations):
            result.delivery_due = True
        return result


async def run_loop(
    name: str,
    step: Callable[[datetime], Any],
    interval: float,
    stop: asyncio.Event,
    wakeup: asyncio.Event | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Call `step(now)` every `interval` seconds (sooner when woken) until `stop` is set."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            await step(utcnow())
        except StoreUnavailable as e:
            log.warning("%s: database unavailable (%s); retrying", name, e)
            if on_error:
                on_error(e)
        except Exception as e:
            log.exception("%s: unexpected error; retrying", name)
            if on_error:
                on_error(e)
        delay = max(0.0, interval - (time.monotonic() - started))
        waiters = [asyncio.ensure_future(stop.wait())]
        if wakeup is not None:
            waiters.append(asyncio.ensure_future(wakeup.wait()))
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if wakeup is not None:
            wakeup.clear()
