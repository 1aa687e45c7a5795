"""Ingest: parsed alerts -> mapped -> correlated in the store. No HTTP here.

The web handler calls `Ingestor.ingest`; tests and the benchmark call it too.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from .. import correlation
from ..config import Config
from ..rules import Mapping
from ..store import Store
from .alertmanager import Notification

MAP_CACHE_SIZE = 16384  # label sets
MAP_CACHE_MAX_CHARS = 2048  # only label sets up to this size are cached: at most ~32 MB of keys


class Ingestor:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        # Alertmanager re-sends every alert of a group with each notification: map a label set once.
        self._map_items = functools.lru_cache(maxsize=MAP_CACHE_SIZE)(self._map_uncached)

    def map(self, labels: dict[str, str]) -> Mapping:
        if sum(len(k) + len(v) for k, v in labels.items()) > MAP_CACHE_MAX_CHARS:
            return self.config.map(labels)  # a huge label set is not kept: the cache stays a few MB
        return self._map_items(tuple(labels.items()))

    def _map_uncached(self, items: tuple[tuple[str, str], ...]) -> Mapping:
        return self.config.map(dict(items))

    def owner_snapshot(self, name: str) -> dict[str, Any]:
        """What the incident keeps of its owner, so a config change never re-routes it."""
        owner = self.config.owner(name)
        return {
            "name": owner.name,
            "targets": [{"id": t.id, "type": t.type, "url": t.url.value} for t in owner.targets],
        }

    @property
    def resolve_notice_severities(self) -> frozenset[str]:
        return frozenset(s for s, p in self.config.escalation.policies.items() if p.notify_on_resolve)

    async def ingest(self, notification: Notification, now: datetime) -> correlation.Plan:
        alerts = correlation.dedupe(notification.alerts)
        mappings = {a.fingerprint: self.map(a.labels) for a in alerts}
        return await self.store.ingest(
            alerts,
            mappings,
            now,
            reopen_window_start=now - self.config.correlation.reopen_window,
            external_url=notification.external_url,
            owner_snapshot=self.owner_snapshot,
            resolve_notice_severities=self.resolve_notice_severities,
        )
