"""Group commit for ingest: webhooks waiting for a writer are written together, one transaction per batch.

A webhook, parsed and mapped, is queued here instead of opening its own transaction. While fewer than
`writers` batches run, a writer takes what is queued, in arrival order, as one batch (up to `max_alerts`
alerts and MAX_KEYS_PER_TRANSACTION keys) and hands it to `Store.ingest_batch`: one transaction locks the
union of its keys, plans each webhook against the state the ones before it leave, writes, commits once; then
each webhook is answered. Nothing waits for a timer: an idle batcher starts a writer for a lone webhook at
once, and batches form only from what queued while other writers ran.

Order per key is arrival order: a webhook whose keys overlap a running batch (or an earlier webhook still
waiting) waits for a later batch, queued here without a connection. Batches with disjoint keys run at once.

Failures: a transient error (StoreUnavailable but not StoreRejected) answers every webhook of the batch with
it (503: Alertmanager retries). Any other failure of a batch of several is retried one webhook at a time, in
order, so that one bad payload costs only its own answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .. import correlation
from .. import store as store_module
from ..store import Store, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

# While only batches of fewer alerts than this are being written, another writer starts only for a batch of at
# least this many; smaller ones wait for a running writer, which takes everything queued when it is done. A
# transaction's fixed work (four round trips, the commit) costs the process about what planning and writing a
# few dozen small alerts does: 16 one-alert webhooks in flight took ~200 us of the process's CPU each with a
# writer per batch of ~2.7, ~130 us in the bigger batches of one writer, and went ~30 % faster (bench/ceiling.py
# ingestor, BENCHMARKS.md). Beside a batch of more alerts, which takes longer, anything gets its own writer, so
# a small webhook never waits for a big one on other keys; and batches of big webhooks are worth writing side
# by side, keeping PostgreSQL's cores busy.
PARALLEL_BATCH_ALERTS = 30


@dataclass(eq=False)
class _Waiting:
    webhook: correlation.Webhook
    source: str | None
    future: asyncio.Future[correlation.Plan]

    @property
    def keys(self) -> frozenset[str]:
        return self.webhook.keys

    @property
    def alerts(self) -> int:
        return len(self.webhook.alerts)


class Batcher:
    def __init__(
        self,
        store: Store,
        *,
        writers: int = 4,
        max_alerts: int = 2000,
        resolve_notice_severities: Callable[[], frozenset[str]] = frozenset,
        on_batch: Callable[[int, int], None] = lambda webhooks, alerts: None,
    ):
        self.store = store
        self.writers = max(1, writers)
        self.max_alerts = max(1, max_alerts)
        self.resolve_notice_severities = resolve_notice_severities
        self.on_batch = on_batch  # (webhooks, alerts) of each batch written: the metrics and the benchmark count
        self._queue: deque[_Waiting] = deque()
        self._busy: set[str] = set()  # the keys of the running batches
        self._running: dict[asyncio.Task[None], int] = {}  # the running writers, with their batch's alerts

    async def submit(self, webhook: correlation.Webhook, *, source: str | None = None) -> correlation.Plan:
        """Queue one webhook (at most MAX_KEYS_PER_TRANSACTION keys) and return its plan once committed."""
        waiting = _Waiting(webhook, source, asyncio.get_running_loop().create_future())
        # its error is read here too: a caller that went away must not leave it "never retrieved"
        waiting.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(waiting)
        self._dispatch()
        # shielded: a caller that goes away (a client hanging up) leaves its webhook to be written anyway
        return await asyncio.shield(waiting.future)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self.writers:
            # beside small batches, another writer only for a batch worth a transaction of its own; beside a big
            # one (which takes long), for anything (see PARALLEL_BATCH_ALERTS)
            small_running = self._running and max(self._running.values()) < PARALLEL_BATCH_ALERTS
            batch = self._take(PARALLEL_BATCH_ALERTS if small_running else 1)
            if not batch:
                return
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._running[task] = sum(w.alerts for w in batch)

    def _take(self, min_alerts: int) -> list[_Waiting]:
        """The next batch: the queued webhooks, in arrival order, that neither overlap a running batch nor an
        earlier webhook left waiting, within the bounds; none (the queue as it was) if it would hold fewer than
        `min_alerts` alerts."""
        queued_before = list(self._queue)
        batch: list[_Waiting] = []
        keys: set[str] = set()
        blocked = set(self._busy)
        alerts = 0
        left: deque[_Waiting] = deque()
        while self._queue:
            w = self._queue.popleft()
            fits = not batch or (
                alerts + w.alerts <= self.max_alerts and len(keys | w.keys) <= store_module.MAX_KEYS_PER_TRANSACTION
            )
            if not fits:
                left.append(w)
                left.extend(self._queue)
                self._queue.clear()
                break
            if w.keys & blocked:
                blocked |= w.keys  # a later webhook on these keys must not overtake it
                left.append(w)
                continue
            batch.append(w)
            keys |= w.keys
            alerts += w.alerts
        if alerts < min_alerts:
            self._queue = deque(queued_before)
            return []
        self._queue = left
        self._busy |= keys
        return batch

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            try:
                await self._commit(batch)
            except StoreUnavailable as e:
                if isinstance(e, StoreRejected) and len(batch) > 1:
                    await self._alone(batch)
                else:
                    _fail(batch, e)
            except Exception as e:  # a bug in planning or encoding: one webhook's, most likely
                if len(batch) > 1:
                    log.warning(
                        "ingest batch of %d webhooks failed (%s): retrying each alone", len(batch), type(e).__name__
                    )
                    await self._alone(batch)
                else:
                    _fail(batch, e)
        finally:
            for w in batch:
                self._busy -= w.keys
                if not w.future.done():  # never leave a caller waiting
                    w.future.set_exception(StoreUnavailable("ingest batch ended without an answer"))
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type,unused-ignore]
            self._dispatch()

    async def _commit(self, batch: list[_Waiting]) -> None:
        plans = await self.store.ingest_batch(
            [w.webhook for w in batch], self.resolve_notice_severities(), [w.source for w in batch]
        )
        for w, p in zip(batch, plans, strict=True):
            if not w.future.done():
                w.future.set_result(p)
        try:  # committed: nothing after this may count as the batch failing (it would be written again)
            self.on_batch(len(batch), sum(w.alerts for w in batch))
        except Exception:
            log.exception("ingest batch callback failed")

    async def _alone(self, batch: list[_Waiting]) -> None:
        """Each webhook of a refused batch in its own transaction, in order (its keys stay taken meanwhile)."""
        for i, w in enumerate(batch):
            try:
                await self._commit([w])
            except StoreRejected as e:
                _fail([w], e)
            except StoreUnavailable as e:  # the database went away: the rest would fail the same way
                _fail(batch[i:], e)
                return
            except Exception as e:
                _fail([w], e)


def _fail(batch: list[_Waiting], error: BaseException) -> None:
    for w in batch:
        if not w.future.done():
            w.future.set_exception(error)
