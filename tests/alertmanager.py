"""A real Alertmanager (Debian's prometheus-alertmanager 0.25) as a subprocess on loopback: the suite's one launcher.

The `alertmanagers` fixture (tests/conftest.py) yields an `Alertmanagers`: call it with a name and a config file's
text to start one process (own storage under tmp_path, debug log in its directory, gossip off unless clustered);
every process is stopped in teardown and the tail of its log printed (shown when the test fails, or with -rP).
Tests skip when the binary is missing: `apt-get install -y prometheus-alertmanager` (or set ALERTMANAGER_BIN).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import deadline, eventually, free_port, sum_samples

AM_BINARY = (
    os.environ.get("ALERTMANAGER_BIN") or shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
)
# Log lines about gossip and flushing: many per second in a cluster, and never what a failure is about.
LOG_NOISE = ("memberlist", "Stream connection", "push/pull", "msg=flushing")


def webhook_config(
    webhook_url: str, token: str | None = None, *, group_by: list[str], send_resolved: bool = True
) -> str:
    """A config that sends every group to one webhook (with a bearer token when given), grouping and resending
    every second."""
    auth = (
        f"""
        http_config:
          authorization:
            type: Bearer
            credentials: {token}"""
        if token
        else ""
    )
    return f"""\
route:
  receiver: incidents
  group_by: {json.dumps(group_by)}
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: incidents
    webhook_configs:
      - url: {webhook_url}
        send_resolved: {str(send_resolved).lower()}{auth}
"""


@dataclass
class Alertmanager:
    name: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    cluster_port: int | None
    external_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "alertmanager.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, session: aiohttp.ClientSession, *, peers: int = 0, timeout: float = 60.0) -> None:
        """/-/ready answers 200, and with peers > 0 the cluster reports `ready` with that many members; fails at
        once if the process exits, after deadline(timeout) otherwise."""

        async def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                async with session.get(f"{self.url}/-/ready") as r:
                    if r.status != 200:
                        return False
                if not peers:
                    return True
                async with session.get(f"{self.url}/api/v2/status") as r:
                    cluster = (await r.json()).get("cluster") or {}
                return cluster.get("status") == "ready" and len(cluster.get("peers") or []) == peers
            except aiohttp.ClientError:
                return False

        try:
            await eventually(ready, f"{self.name} to be ready", timeout, interval=0.05)
        except AssertionError as e:
            pytest.fail(f"{e}:\n{self.log()[-3000:]}")

    async def post_alerts(self, session: aiohttp.ClientSession, alerts: list[dict[str, Any]]) -> None:
        """Post alerts to /api/v2/alerts, as Prometheus does."""
        async with session.post(f"{self.url}/api/v2/alerts", json=alerts) as r:
            assert r.status == 200, f"{self.name} refused alerts: {r.status} {await r.text()}"

    async def alerts(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"{self.url}/api/v2/alerts") as r:
            assert r.status == 200
            return list(await r.json())

    async def fingerprints(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """instance label -> fingerprint, as Alertmanager computes it."""
        return {a["labels"]["instance"]: a["fingerprint"] for a in await self.alerts(session)}

    async def metric(self, session: aiohttp.ClientSession, name: str, **labels: str) -> float:
        """Sum of one metric's samples whose labels include `labels`, from Alertmanager's /metrics."""
        async with session.get(f"{self.url}/metrics") as r:
            text = await r.text()
        return sum_samples(text, name, labels)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=deadline(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=deadline(10))

    def log_tail(self, lines: int = 80) -> str:
        kept = [line for line in self.log().splitlines() if not any(n in line for n in LOG_NOISE)]
        return "\n".join(kept[-lines:])


class Alertmanagers:
    """Starts Alertmanagers under one directory and stops them all (`stop_all`, called by the fixture)."""

    def __init__(self, root: Path, binary: str = AM_BINARY) -> None:
        self.root = root
        self.binary = binary
        self.started: list[Alertmanager] = []

    def workdir(self, name: str) -> Path:
        """The process's directory, made on first use: a test may put files its config refers to there first."""
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def __call__(
        self,
        name: str,
        config: str,
        *,
        cluster: bool = False,
        peers: tuple[int, ...] = (),
        external_url: str | None = None,
    ) -> Alertmanager:
        """Start `name` with `config` (alertmanager.yml's text); clustered, it gossips with `peers` (cluster ports).
        Its external URL (in every notification's externalURL) is http://<name>.test:<port> unless given."""
        workdir = self.workdir(name)
        (workdir / "alertmanager.yml").write_text(config)
        port = free_port()
        external_url = external_url or f"http://{name}.test:{port}"
        args = [
            self.binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={external_url}",
            "--log.level=debug",
        ]
        cluster_port = None
        if cluster:
            cluster_port = free_port(udp=True)
            args += [
                f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                "--cluster.peer-timeout=50ms",
                # Gossip settles in 4 x (10 x gossip-interval) = 8 s by default; notifications wait for it.
                "--cluster.settle-timeout=2s",
                *(f"--cluster.peer=127.0.0.1:{p}" for p in peers),
            ]
        else:
            args.append("--cluster.listen-address=")  # gossip off
        with (workdir / "alertmanager.log").open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        am = Alertmanager(name, port, workdir, proc, cluster_port, external_url)
        self.started.append(am)
        return am

    def stop_all(self) -> None:
        for am in self.started:
            am.stop()
        for am in self.started:
            print(f"----- {am.name}: exit {am.proc.returncode}, full log {am.log_path} -----\n{am.log_tail()}")
