"""Every typed key of the application's state, in one place."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .ingest.service import Ingestor
from .store import Store

CONFIG = web.AppKey("config", Config)
DATABASE_URL = web.AppKey("database_url", str)
STORE = web.AppKey("store", Store)
INGESTOR = web.AppKey("ingestor", Ingestor)
