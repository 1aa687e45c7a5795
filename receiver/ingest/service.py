"""Ingest: parsed alerts -> mapped -> correlated in the store. No HTTP here.

The web handler calls `Ingestor.ingest`; tests and the benchmark call it too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import correlation, heartbeats
from ..config import Config
from ..model import Notification
from ..rules import Mapping
from ..store import Store, webhook_chunks
from .batcher import Batcher
from .cache import SizedLRU, str_bytes

# Bytes, measured per entry (key, mapping and the cache's own overhead): about 10,000 label sets of the
# usual size, whatever their shape. A label set over MAP_CACHE_MAX_CHARS is mapped but never cached.
MAP_CACHE_BYTES = 8 * 1024 * 1024
MAP_CACHE_MAX_CHARS = 2048
MAP_SLICE = 1000  # alerts mapped between two yields to the event loop (~10 ms of work)
_SEP = "\x00"


def _mapping_entry_size(key: str, mapping: Mapping) -> int:
    return (
        sys.getsizeof(key)
        + sys.getsizeof(mapping)
        + str_bytes(mapping.route, mapping.kind, mapping.severity, mapping.owner, mapping.rule)
    )


class Ingestor:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        # Alertmanager re-sends every alert of a group with each notification: map a label set once.
        self.map_cache: SizedLRU[str, Mapping] = SizedLRU(MAP_CACHE_BYTES, _mapping_entry_size)
        # called when a ping reached a missed heartbeat: the app wakes the check that resolves its incident
        self.on_missed_ping: Callable[[], None] = lambda: None
        # webhooks wait here for a writer and are committed together (group commit)
        self.batcher = Batcher(
            store,
            writers=config.database.max_ingest_transactions,
            max_alerts=config.database.max_ingest_batch_alerts,
            resolve_notice_severities=lambda: self.config.escalation.resolve_notice_severities,
        )

    def map(self, labels: dict[str, str]) -> Mapping:
        # The key is one string, names then values, NUL-separated: a few bytes a label where a tuple of pairs
        # cost about 64 bytes a label. It is unambiguous when no name or value holds a NUL (the parser
        # replaces them; the count tells), so a label set with one is mapped without the cache.
        key = _SEP.join(labels) + _SEP + _SEP.join(labels.values())
        if len(key) > MAP_CACHE_MAX_CHARS or key.count(_SEP) != 2 * len(labels) - 1:
            return self.config.map(labels)
        mapping = self.map_cache.get(key)
        if mapping is None:
            mapping = self.config.map(labels)
            self.map_cache.put(key, mapping)
        return mapping

    def owner_snapshot(self, name: str) -> dict[str, Any]:
        """What the incident keeps of its owner, so a config change never re-routes it."""
        owner = self.config.owner(name)
        return {
            "name": owner.name,
            "targets": [{"id": t.id, "type": t.type, "url": t.url.value} for t in owner.targets],
        }

    async def ingest(
        self,
        notification: Notification,
        now: datetime,
        *,
        source: str | None = None,
        event_detail: dict[str, Any] | None = None,
    ) -> correlation.Plan:
        """Map and correlate one notification. `source` ('<sender>/<receiver>', by default from the notification)
        is kept on its member alerts; `event_detail` goes into each alert's timeline event."""
        if source is None:
            source = f"{notification.sender}/{notification.details.get('receiver') or ''}"
        alerts = correlation.dedupe(notification.alerts)
        # a heartbeat's alerts are pings, never incidents; recorded (committed) before the webhook is answered
        alerts, missed_pinged = await heartbeats.take_pings(
            self.store, self.config.heartbeats, alerts, notification.sender, now
        )
        if missed_pinged:
            self.on_missed_ping()
        mappings: dict[str, Mapping] = {}
        for start in range(0, len(alerts), MAP_SLICE):
            if start:
                # a 20,000-alert webhook takes ~0.2 s to map: other requests run between the slices (on the
                # loop, not in a thread, because the mapping cache is not thread-safe)
                await asyncio.sleep(0)
            for a in alerts[start : start + MAP_SLICE]:
                mappings[a.fingerprint] = self.map(a.labels)
        plan = correlation.Plan()
        chunks = webhook_chunks(
            alerts,
            mappings,
            now,
            reopen_window_start=now - self.config.correlation.reopen_window,
            external_url=notification.external_url,
            owner_snapshot=self.owner_snapshot,
            actor=notification.sender,  # the timeline says which sender's alert did it
            event_detail=event_detail,
        )
        # a webhook of very many keys goes in chunks, each committed before the next is queued (see key_chunks)
        for webhook in chunks:
            plan.merge(await self.batcher.submit(webhook, source=source))
        return plan
