"""Ingest: parsed alerts -> mapped -> correlated in the store. No HTTP here.

The web handler calls `Ingestor.ingest`; tests and the benchmark call it too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import correlation
from ..config import Config
from ..rules import Mapping, map_labels
from ..store import Store
from .alertmanager import Notification


class Ingestor:
    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store

    def map(self, labels: dict[str, str]) -> Mapping:
        return map_labels(labels, self.config.rules, self.config.default_owner)

    def owner_snapshot(self, name: str) -> dict[str, Any]:
        return {"name": name}

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
        )
