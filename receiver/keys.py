"""Every typed key of the application's state, in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import jinja2
from aiohttp import web

from .alertmanager_api import AlertmanagerAPI
from .config import Config
from .escalation import Escalator
from .heartbeats import HeartbeatMonitor
from .ingest.service import Ingestor
from .metrics import Metrics
from .notify.delivery import Deliverer
from .server import Drain
from .silences import Silencer
from .store import Store

if TYPE_CHECKING:  # web.users reads these keys: imported for the type only
    from .web.users import SignIn

CONFIG = web.AppKey("config", Config)
DATABASE_URL = web.AppKey("database_url", str)
STORE = web.AppKey("store", Store)
INGESTOR = web.AppKey("ingestor", Ingestor)
ESCALATOR = web.AppKey("escalator", Escalator)
HEARTBEATS = web.AppKey("heartbeats", HeartbeatMonitor)
DELIVERER = web.AppKey("deliverer", Deliverer)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
LINK_SECRET = web.AppKey("link_secret", str)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
ESCALATION_WAKEUP = web.AppKey("escalation_wakeup", asyncio.Event)
DELIVERY_WAKEUP = web.AppKey("delivery_wakeup", asyncio.Event)
LOOPS = web.AppKey("loops", list)
METRICS = web.AppKey("metrics", Metrics)
DRAIN = web.AppKey("drain", Drain)
SILENCER = web.AppKey("silencer", Silencer)  # set only with alertmanager.silences: true
SIGN_IN: web.AppKey[SignIn] = web.AppKey("sign_in")
ALERTMANAGER_API = web.AppKey("alertmanager_api", AlertmanagerAPI)  # set only with an `alertmanager` section
