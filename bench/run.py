"""The benchmark: one command, `python -m bench` (see `--help` and BENCHMARKS.md).

Every measurement runs against one private PostgreSQL started here; the rows that are compared are
interleaved (each repeat runs every row once, in a rotated order) so that a noisy neighbour hurts all
rows alike, and ratios are taken within a repeat before the median is taken.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import loadgen, preload, servers
from .loadgen import Result
from .payloads import PayloadStream, Workload, probe_body
from .pg import Postgres, restart_with

ROWS = {
    "receiver": "receiver (HTTP)",
    "sql": "raw SQL ceiling (replay, no HTTP)",
    "ingestor": "Ingestor, no HTTP",
    "http": "HTTP ceiling (parse JSON, 200)",
    "fixed16": "fixed ceiling (raw asyncpg correlation, 16 in flight)",
    "fixed4": "fixed ceiling (raw asyncpg correlation, 4 in flight)",
    "alerta": "alerta-server (gunicorn, 2 workers)",
}
RECEIVER_ROWS = ("receiver", "candidate", "replicas")  # the rows that start receiver processes
SECTIONS = ("ingest", "paced", "storm", "history", "tick", "pages", "blocking", "memory")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median_min_max(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for k in ("alerts_per_s", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        out[k] = median_min_max([r[k] for r in runs])
    for k in ("cpu_s", "pg_cpu_s", "client_cpu_s"):  # CPU microseconds per alert, each side
        per = [
            r["extra"][k] * 1e6 / r["extra"]["alerts_total"]
            for r in runs
            if r["extra"].get(k) is not None and r["extra"].get("alerts_total")
        ]
        if per:
            out[f"{k}_us_per_alert"] = median_min_max(per)
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["shed"] = sum(r["extra"].get("shed", 0) for r in runs)
    return out


def rotate(items: list[str], by: int) -> list[str]:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="receiver-bench-work-"))
        self.logdir = Path(args.logdir) if args.logdir else self.work / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        log(f"starting PostgreSQL (logs in {self.logdir})")
        try:
            self.pg = Postgres()
        except BaseException:
            self._remove_work(failed=True)
            raise
        try:
            settings = dict(kv.split("=", 1) for kv in args.pg_set)
            if args.pg_stat_statements:
                settings["shared_preload_libraries"] = "pg_stat_statements"
            if settings:
                restart_with(self.pg, settings)
            self.pg.receiver_template()
        except BaseException:
            self.close(failed=True)
            raise
        self.results: dict[str, Any] = {
            "machine": machine(self.pg),
            "options": vars(args).copy(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "code": source_digest(servers.ROOT),
            "source": os.environ.get(SNAPSHOT_ENV) or str(servers.ROOT),
        }
        self._alerta_venv: Path | None = None
        self.candidate = Path(args.candidate).resolve() if args.candidate else None
        self._candidate_template: str | None = None
        if self.candidate is not None:
            self.results["candidate"] = {"path": str(self.candidate), "code": source_digest(self.candidate)}

    def close(self, failed: bool = False) -> None:
        try:
            self.pg.close()
        finally:
            self._remove_work(failed)

    def _remove_work(self, failed: bool) -> None:
        """The work directory goes, unless a failed run keeps its logs there (--logdir elsewhere: nothing to keep)."""
        import shutil

        if failed and self.logdir.is_relative_to(self.work):
            log(f"kept {self.work} (logs: {self.logdir})")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- workloads --------------------------------------------------------------------------------

    def workload(self, size: int, **over: Any) -> Workload:
        a = self.args
        params = {
            "alerts_per_payload": size,
            "routes": a.routes,
            "kinds": a.kinds,
            "instances": a.instances,
            "resolved_share": a.resolved_share,
            "seed": a.seed,
            **over,
        }
        return Workload(**params)

    def _workload_args(self, w: Workload, storm_group: int | None) -> list[str]:
        out = [
            "--alerts-per-payload",
            str(w.alerts_per_payload),
            "--routes",
            str(w.routes),
            "--kinds",
            str(w.kinds),
            "--instances",
            str(w.instances),
            "--resolved-share",
            str(w.resolved_share),
            "--seed",
            str(w.seed),
        ]
        if storm_group is not None:
            out += ["--storm-group", str(storm_group)]
        return out

    # --- rows ---------------------------------------------------------------------------------------

    def fresh_db(self, row: str) -> str:
        if row == "alerta":
            return self.pg.create()
        if row == "candidate":
            assert self.candidate is not None
            if self._candidate_template is None:
                name = "bench_template_candidate"
                servers.migrate_with(self.candidate, self.pg.create(name), self.logdir / "candidate-migrate.log")
                self._candidate_template = name
            return self.pg.create(template=self._candidate_template)
        return self.pg.fresh_receiver_db()

    def ceiling(
        self,
        mode: str,
        db: str,
        w: Workload,
        *,
        concurrency: int,
        duration: float,
        storm_group: int | None = None,
        extra: list[str] | None = None,
    ) -> Result:
        argv = [
            sys.executable,
            "-m",
            "bench.ceiling",
            mode,
            "--db",
            db,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--warmup",
            str(self.args.warmup),
            *self._workload_args(w, storm_group),
            *(extra or []),
        ]
        env = dict(os.environ, PYTHONPATH=str(servers.ROOT))
        with (self.logdir / f"ceiling-{mode}.log").open("ab") as err:
            out = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=servers.ROOT, timeout=duration * 20 + 300
            )
        if out.returncode != 0:
            raise RuntimeError(f"bench.ceiling {mode} failed ({out.returncode}); see {self.logdir}/ceiling-{mode}.log")
        return Result.from_dict(json.loads(out.stdout))

    def yardstick(
        self, db: str, w: Workload, *, concurrency: int, duration: float, storm_group: int | None = None
    ) -> Result:
        argv = [
            sys.executable,
            "-m",
            "bench.yardstick",
            "--db",
            db,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--warmup",
            str(self.args.warmup),
            *self._workload_args(w, storm_group),
        ]
        env = dict(os.environ, PYTHONPATH=str(servers.ROOT))
        with (self.logdir / "yardstick.log").open("ab") as err:
            out = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=servers.ROOT, timeout=duration * 20 + 300
            )
        if out.returncode != 0:
            raise RuntimeError(f"bench.yardstick failed ({out.returncode}); see {self.logdir}/yardstick.log")
        return Result.from_dict(json.loads(out.stdout))

    def http(
        self,
        url: str | list[str],
        w: Workload,
        *,
        concurrency: int,
        duration: float,
        storm_group: int | None = None,
        max_requests: int = 10_000_000,
        timeout: float = 60.0,
        drain_timeout: float | None = None,
        bodies: Iterator[tuple[bytes, int]] | None = None,
        rate: float | None = None,
    ) -> Result:
        if bodies is None:
            bodies = iter(PayloadStream(w, group=storm_group))
        return asyncio.run(
            loadgen.run_http(
                url,
                bodies,
                concurrency=concurrency,
                duration=duration,
                warmup=self.args.warmup,
                max_requests=max_requests,
                timeout=timeout,
                drain_timeout=drain_timeout,
                rate=rate,
                client=self.args.http_client,
            )
        )

    def run_row(
        self,
        row: str,
        w: Workload,
        *,
        concurrency: int,
        duration: float,
        storm_group: int | None = None,
        recording: Path | None = None,
        free: bool = False,
        db: str | None = None,
        rate: float | None = None,
    ) -> Result:
        """One measured run of one row on a fresh database (or `db`), with the CPU seconds each side used:
        the server (or the ceiling's process), PostgreSQL (all its processes) and the load generator."""
        r = self._run_row(
            row,
            w,
            concurrency=concurrency,
            duration=duration,
            storm_group=storm_group,
            recording=recording,
            free=free,
            db=db,
            rate=rate,
        )
        if r.requests == 0 and row != "alerta":
            raise RuntimeError(f"{row}: no request succeeded ({r.statuses}); logs in {self.logdir}")
        return r

    def _metered(self, load: Callable[[], Result], *server: servers.Server) -> Result:
        """Run `load`, adding the CPU seconds used meanwhile by the server(s), PostgreSQL and this process."""
        pm = self.pg.server.get_pid()
        pg0, own0 = servers.tree_cpu_seconds(pm), servers.own_cpu_seconds()
        srv0 = sum(servers.tree_cpu_seconds(s.proc.pid) for s in server)
        r = load()
        r.extra["pg_cpu_s"] = servers.tree_cpu_seconds(pm) - pg0
        if server:
            r.extra["cpu_s"] = sum(servers.tree_cpu_seconds(s.proc.pid) for s in server) - srv0
            r.extra["client_cpu_s"] = servers.own_cpu_seconds() - own0
        return r

    def _run_row(
        self,
        row: str,
        w: Workload,
        *,
        concurrency: int,
        duration: float,
        storm_group: int | None = None,
        recording: Path | None = None,
        free: bool = False,
        db: str | None = None,
        rate: float | None = None,
    ) -> Result:
        if rate is not None and row not in RECEIVER_ROWS:
            raise ValueError(f"{row}: only the receiver rows run paced")
        fresh = db is None
        if fresh:
            db = self.fresh_db(row)
        assert db is not None
        try:
            if row in RECEIVER_ROWS:
                root = self.candidate if row == "candidate" and self.candidate else servers.ROOT
                n = self.args.replicas if row == "replicas" else 1
                started: list[servers.Server] = []
                try:
                    for _ in range(n):
                        started.append(servers.start_receiver(db, self.logdir, root=root))
                    r = self._metered(
                        lambda: self.http(
                            [s.base + "/webhook" for s in started],
                            w,
                            concurrency=concurrency,
                            duration=duration,
                            storm_group=storm_group,
                            rate=rate,
                        ),
                        *started,
                    )
                    r.extra["rss_mb"] = sum(s.rss_bytes() for s in started) / 2**20
                    r.extra.update(_batches([s.base for s in started]))
                finally:
                    for s in started:
                        s.stop()
                return r
            if row == "http":
                server = servers.start_http_ceiling(self.logdir)
                try:
                    return self._metered(
                        lambda: self.http(
                            server.base + "/webhook",
                            w,
                            concurrency=concurrency,
                            duration=duration,
                            storm_group=storm_group,
                        ),
                        server,
                    )
                finally:
                    server.stop()
            if row == "alerta":
                assert self._alerta_venv is not None
                server = servers.start_alerta(self._alerta_venv, db, self.logdir)
                try:
                    return self._metered(
                        lambda: self.http(
                            server.base + "/webhooks/prometheus",
                            w,
                            concurrency=concurrency,
                            duration=self.args.alerta_duration or duration,
                            storm_group=storm_group,
                            timeout=600,
                            drain_timeout=2.0,
                        ),
                        server,
                    )
                finally:
                    server.stop()
            if row == "ingestor":
                return self._metered(
                    lambda: self.ceiling(
                        "ingestor", db, w, concurrency=concurrency, duration=duration, storm_group=storm_group
                    )
                )
            if row in ("fixed16", "fixed4"):
                # the fixed yardstick: its concurrency is part of the row (16 or 4 transactions in flight)
                n = 4 if row == "fixed4" else 16
                return self._metered(
                    lambda: self.yardstick(db, w, concurrency=n, duration=duration, storm_group=storm_group)
                )
            if row == "sql":
                assert recording is not None
                return self._metered(
                    lambda: self.ceiling(
                        "replay",
                        db,
                        w,
                        concurrency=concurrency,
                        duration=duration,
                        extra=["--recording", str(recording), *(["--free"] if free else [])],
                    )
                )
            raise ValueError(row)
        finally:
            if fresh:
                self.pg.drop(db)

    def record(
        self, w: Workload, name: str, *, concurrency: int, duration: float, storm_group: int | None = None
    ) -> Path:
        """Capture the receiver's statements for the workload (untimed), for the raw SQL replay."""
        path = self.work / f"{name}.pickle"
        db = self.pg.fresh_receiver_db()
        try:
            r = self.ceiling(
                "record",
                db,
                w,
                concurrency=concurrency,
                duration=duration,
                storm_group=storm_group,
                extra=["--recording", str(path)],
            )
        finally:
            self.pg.drop(db)
        log(f"recorded {r.extra.get('recorded_payloads')} payloads for {name} ({r.alerts_per_s:.0f} alerts/s)")
        if not r.extra.get("recorded_payloads"):
            raise RuntimeError(f"the capture for {name} recorded nothing ({r.statuses}); logs in {self.logdir}")
        return path

    # --- sections -----------------------------------------------------------------------------------

    def ingest(self) -> None:
        a = self.args
        rows = (
            ["receiver"]
            + (["candidate"] if self.candidate else [])
            + (["replicas"] if a.replicas > 1 else [])
            + ["sql", "fixed16", "fixed4", "ingestor", "http"]
            + (["alerta"] if a.alerta else [])
        )
        if a.alerta:
            log("installing/checking alerta-server in its own venv")
            try:
                self._alerta_venv = servers.alerta_venv(self.logdir / "alerta-install.log")
            except Exception as e:
                log(f"alerta-server could not be installed: {e}; see {self.logdir}/alerta-install.log")
                self.results["alerta_error"] = f"install failed: {e}"
                rows.remove("alerta")
        recordings = {}
        for size in a.sizes:
            # long enough that the faster replay still fills its window
            recordings[size] = self.record(
                self.workload(size), f"ingest-{size}", concurrency=a.concurrency, duration=a.duration * a.record_factor
            )
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {str(s): {r: [] for r in rows} for s in a.sizes}
        for rep in range(a.repeats):
            for size in a.sizes:
                for row in rotate(rows, rep):
                    try:
                        r = self.run_row(
                            row,
                            self.workload(size),
                            concurrency=a.concurrency,
                            duration=a.duration,
                            recording=recordings[size],
                        )
                    except Exception as e:
                        if row != "alerta":
                            raise
                        log(f"alerta failed: {e}")
                        self.results["alerta_error"] = str(e)[-2000:]
                        continue
                    raw[str(size)][row].append(r.as_dict())
                    log(
                        f"ingest rep {rep + 1}/{a.repeats} size {size:>3} {row:<9} {r.alerts_per_s:9.0f} alerts/s "
                        f"{r.requests_per_s:8.1f} req/s p50 {r.p50_ms:7.1f} p99 {r.p99_ms:7.1f} ms "
                        f"non2xx {r.non2xx} err {r.errors}"
                    )
        self.results["ingest"] = {size: self._with_ratios(per_row, rows) for size, per_row in raw.items()}

    def paced(self) -> None:
        """Latency at a fixed offered load (an open loop, as Alertmanager sends), the receiver (and the
        candidate) side by side at the same rates: what the closed-loop rows, which run at saturation, cannot
        compare when one side is faster."""
        a = self.args
        rows = ["receiver"] + (["candidate"] if self.candidate else [])
        raw: list[dict[str, list[dict[str, Any]]]] = [{r: [] for r in rows} for _ in a.paced_rates]
        for rep in range(a.repeats):
            for load, (size, alerts_per_s) in enumerate(a.paced_rates):
                for row in rotate(rows, rep):
                    r = self.run_row(
                        row,
                        self.workload(size),
                        concurrency=a.paced_max_in_flight,
                        duration=a.paced_duration,
                        rate=alerts_per_s / size,
                    )
                    raw[load][row].append(r.as_dict())
                    log(
                        f"paced rep {rep + 1}/{a.repeats} size {size:>3} {row:<9} offered {alerts_per_s:,.0f} "
                        f"got {r.alerts_per_s:9.0f} alerts/s p50 {r.p50_ms:7.1f} p99 {r.p99_ms:7.1f} "
                        f"max {r.max_ms:7.1f} ms shed {r.extra.get('shed', 0)} non2xx {r.non2xx} err {r.errors}"
                    )
        self.results["paced"] = {
            "max_in_flight": a.paced_max_in_flight,
            "loads": [
                {
                    "alerts_per_payload": size,
                    "offered_alerts_per_s": alerts_per_s,
                    "rows": {r: {"summary": summarize(v), "runs": v} for r, v in runs.items() if v},
                }
                for (size, alerts_per_s), runs in zip(a.paced_rates, raw, strict=True)
            ],
        }

    def _with_ratios(self, per_row: dict[str, list[dict[str, Any]]], rows: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": {r: {"summary": summarize(v), "runs": v} for r, v in per_row.items() if v}}
        ratios: dict[str, Any] = {}
        for one, other in [("receiver", o) for o in ("sql", "fixed16", "fixed4", "ingestor", "http", "alerta")] + [
            ("candidate", "sql"),
            ("candidate", "fixed16"),
            ("candidate", "fixed4"),
            ("candidate", "receiver"),
            ("replicas", "sql"),
            ("replicas", "receiver"),
        ]:
            if other in rows and per_row.get(one) and per_row.get(other):
                pairs = [
                    (x["alerts_per_s"], y["alerts_per_s"])
                    for x, y in zip(per_row[one], per_row[other], strict=False)
                    if y["alerts_per_s"]
                ]
                ratios[f"{one}/{other}"] = median_min_max([x / y for x, y in pairs])
        out["ratios"] = ratios
        return out

    def storm(self) -> None:
        a = self.args
        size = a.storm_size
        w = self.workload(size)
        group = 0
        rec = self.record(w, "storm", concurrency=4, duration=a.storm_duration * a.record_factor, storm_group=group)
        variants: dict[str, dict[str, Any]] = {
            "receiver c16": {"row": "receiver", "concurrency": a.concurrency},
            **({"candidate c16": {"row": "candidate", "concurrency": a.concurrency}} if self.candidate else {}),
            **(
                {f"receiver x{a.replicas} c16": {"row": "replicas", "concurrency": a.concurrency}}
                if a.replicas > 1
                else {}
            ),
            "raw SQL c16": {"row": "sql", "concurrency": a.concurrency, "free": True},
            "raw SQL c4": {"row": "sql", "concurrency": 4, "free": True},
            "Ingestor c16": {"row": "ingestor", "concurrency": a.concurrency},
            "Ingestor c4": {"row": "ingestor", "concurrency": 4},
        }
        raw: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
        for rep in range(a.repeats):
            for name in rotate(list(variants), rep):
                v = variants[name]
                r = self.run_row(
                    v["row"],
                    w,
                    concurrency=v["concurrency"],
                    duration=a.storm_duration,
                    storm_group=group,
                    recording=rec,
                    free=v.get("free", False),
                )
                raw[name].append(r.as_dict())
                log(
                    f"storm rep {rep + 1} {name:<13} {r.alerts_per_s:8.0f} alerts/s p50 {r.p50_ms:7.1f} "
                    f"p99 {r.p99_ms:7.1f} ms non2xx {r.non2xx}"
                )
        self.results["storm"] = {
            "alerts_per_payload": size,
            "keys": len(PayloadStream(w).keys_of(group)),
            "variants": {k: {"summary": summarize(v), "runs": v} for k, v in raw.items()},
        }

    def history(self) -> None:
        a = self.args
        w = self.workload(a.history_size)
        log(f"history: preloading {a.history_incidents} resolved incidents")
        hist_db = self.pg.fresh_receiver_db()
        empty_db = self.pg.fresh_receiver_db()
        try:
            info = preload.history(hist_db, self.workload(a.history_size), a.history_incidents, log=log)
            marks = {db: self._marks(db) for db in (hist_db, empty_db)}
            names = ["empty", "history"] + (["empty (candidate)", "history (candidate)"] if self.candidate else [])
            raw: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            for rep in range(a.repeats):
                for name in rotate(names, rep):
                    db = hist_db if name.startswith("history") else empty_db
                    row = "candidate" if "candidate" in name else "receiver"
                    r = self.run_row(row, w, concurrency=a.concurrency, duration=a.duration, db=db)
                    self._reset(db, marks[db])
                    raw[name].append(r.as_dict())
                    log(
                        f"history rep {rep + 1} {name:<8} {r.alerts_per_s:8.0f} alerts/s p50 {r.p50_ms:7.1f} "
                        f"p99 {r.p99_ms:7.1f} ms non2xx {r.non2xx}"
                    )
            ratios = [
                h["alerts_per_s"] / e["alerts_per_s"]
                for h, e in zip(raw["history"], raw["empty"], strict=True)
                if e["alerts_per_s"]
            ]
            if self.candidate:
                cand = [
                    h["alerts_per_s"] / e["alerts_per_s"]
                    for h, e in zip(raw["history (candidate)"], raw["empty (candidate)"], strict=True)
                    if e["alerts_per_s"]
                ]
                self.results["history_candidate_ratio"] = median_min_max(cand)
            self.results["history"] = {
                "incidents": a.history_incidents,
                "alerts_per_payload": a.history_size,
                "preload": info,
                "ratio": median_min_max(ratios),
                "variants": {k: {"summary": summarize(v), "runs": v} for k, v in raw.items()},
            }
        finally:
            self.pg.drop(hist_db)
            self.pg.drop(empty_db)

    def _marks(self, db: str) -> dict[str, Any]:
        with self.pg.connect(_dbname(db)) as conn:
            row = conn.execute("SELECT now(), coalesce(max(id), 0) FROM incident_events").fetchone()
            assert row is not None
            return {"at": row[0], "event_id": row[1]}

    def _reset(self, db: str, mark: dict[str, Any]) -> None:
        """Remove what a run wrote (incidents opened after the mark, with their members and events; events
        appended to older incidents), so that every repeat starts from the same data."""
        with self.pg.connect(_dbname(db)) as conn:
            conn.execute("DELETE FROM notifications WHERE created_at >= %s", (mark["at"],))
            conn.execute("DELETE FROM incidents WHERE first_seen >= %s", (mark["at"],))
            conn.execute("DELETE FROM incident_events WHERE id > %s", (mark["event_id"],))
            conn.execute("VACUUM ANALYZE incidents, incident_alerts, incident_events, notifications")

    def tick(self) -> None:
        a = self.args
        db = self.pg.fresh_receiver_db()
        try:
            log(f"tick: preloading {a.tick_incidents} active incidents")
            info = preload.active(db, a.tick_incidents, log=log)
            out = {"incidents": a.tick_incidents, "preload": info}
            for label, ack in (("default config", None), ("ack_timeout 1h", "1h")):
                out[label] = asyncio.run(_time_ticks(db, a.ticks, ack))
                log(
                    f"tick ({label}): median {out[label]['median_ms']:.2f} ms p95 {out[label]['p95_ms']:.2f} ms "
                    f"escalated {out[label]['escalated']}"
                )
            self.results["tick"] = out
        finally:
            self.pg.drop(db)

    def pages(self) -> None:
        a = self.args
        db = self.pg.fresh_receiver_db()
        try:
            log(f"pages: preloading {a.page_incidents} active incidents")
            preload.active(db, a.page_incidents, log=log)
            big = preload.grow(db, a.page_members, a.page_members)  # one incident with an alert storm's members
            server = servers.start_receiver(db, self.logdir)
            try:
                out: dict[str, Any] = {"incidents": a.page_incidents, "members": a.page_members}
                paths = {p: p for p in ("/", "/metrics", "/api/incidents?status=open")}
                paths[f"/incidents/{{id}} ({a.page_members:,} members)"] = f"/incidents/{big}"
                paths[f"/api/incidents/{{id}} ({a.page_members:,} members)"] = f"/api/incidents/{big}"
                for label, path in paths.items():
                    out[label] = asyncio.run(loadgen.time_gets(server.base + path, a.page_requests))
                    log(
                        f"pages {label}: p50 {out[label]['p50_ms']:.1f} ms p95 {out[label]['p95_ms']:.1f} ms "
                        f"{out[label]['statuses']} {out[label]['bytes']} bytes"
                    )
            finally:
                server.stop()
            self.results["pages"] = out
        finally:
            self.pg.drop(db)

    def blocking(self) -> None:
        """What a bystander waits while one big webhook is ingested: a tiny webhook (on a key of its own) and
        GET /healthz, sent back to back, during --blocking-bodies webhooks of each --blocking-sizes alerts."""
        a = self.args
        rows = ["receiver"] + (["candidate"] if self.candidate else [])
        groups = a.routes * a.kinds
        bodies: dict[str, list[bytes]] = {}
        for size in a.blocking_sizes:
            instances = -(-size // groups)
            stream = PayloadStream(self.workload(groups * instances, instances=instances))
            bodies[str(groups * instances)] = [stream.next()[0] for _ in range(a.blocking_bodies)]
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {n: {row: [] for row in rows} for n in bodies}
        for rep in range(a.repeats):
            for n, big in bodies.items():
                for row in rotate(rows, rep):
                    db = self.fresh_db(row)
                    root = self.candidate if row == "candidate" and self.candidate else servers.ROOT
                    try:
                        server = servers.start_receiver(db, self.logdir, root=root)
                        try:
                            r = asyncio.run(loadgen.probe_during(server.base, big, probe_body))
                        finally:
                            server.stop()
                    finally:
                        self.pg.drop(db)
                    raw[n][row].append(r)
                    log(
                        f"blocking rep {rep + 1} {n:>6} alerts {row:<9} big {r['big']['p50_ms']:7.0f} ms; "
                        f"tiny webhook p99 {r['webhook']['p99_ms']:7.1f} max {r['webhook']['max_ms']:7.1f} ms; "
                        f"healthz p99 {r['healthz']['p99_ms']:7.1f} max {r['healthz']['max_ms']:7.1f} ms; "
                        f"{r['statuses']}"
                    )
        self.results["blocking"] = {
            n: {
                "alerts": int(n),
                "bytes": max(len(b) for b in bodies[n]),
                "bodies": a.blocking_bodies,
                "rows": {
                    row: {
                        "runs": runs,
                        "summary": {
                            f"{kind}_{k}": (max if k == "max_ms" else statistics.median)([x[kind][k] for x in runs])
                            for kind in ("big", "webhook", "healthz")
                            for k in ("p50_ms", "p99_ms", "max_ms", "n")
                        },
                    }
                    for row, runs in per_row.items()
                    if runs
                },
            }
            for n, per_row in raw.items()
        }

    def memory(self) -> None:
        """Resident memory of one receiver process while it ingests --memory-alerts alerts (or runs for
        --memory-max-seconds), sampled every few seconds with the number of alerts sent so far."""
        a = self.args
        w = self.workload(a.memory_size, routes=a.memory_routes)
        db = self.pg.fresh_receiver_db()
        try:
            server = servers.start_receiver(db, self.logdir)
            samples: list[tuple[float, int, float]] = []  # (seconds, alerts sent, RSS MB)
            sent = [0]
            stop = threading.Event()
            start_rss = server.rss_bytes() / 2**20
            t0 = time.monotonic()

            def counted() -> Iterator[tuple[bytes, int]]:
                for body, n in PayloadStream(w):
                    sent[0] += n
                    yield body, n

            def sampler() -> None:
                while not stop.wait(a.memory_sample_every):
                    try:
                        samples.append((time.monotonic() - t0, sent[0], server.rss_bytes() / 2**20))
                    except Exception:
                        return

            th = threading.Thread(target=sampler, daemon=True)
            th.start()
            try:
                requests = max(1, a.memory_alerts // w.alerts_per_payload)
                r = self.http(
                    server.base + "/webhook",
                    w,
                    concurrency=a.concurrency,
                    duration=a.memory_max_seconds,
                    max_requests=requests,
                    bodies=counted(),
                )
                stop.set()
                th.join()
                end_rss = server.rss_bytes() / 2**20
                seconds = time.monotonic() - t0
                samples.append((seconds, sent[0], end_rss))
            finally:
                stop.set()
                server.stop()
            half = [x for x in samples if x[0] >= seconds / 2]
            at_million = next((x for x in samples if x[1] >= 1_000_000), None)
            self.results["memory"] = {
                "alerts_target": a.memory_alerts,
                "alerts_ok": r.extra.get("alerts_total", 0),
                "alerts_sent": sent[0],
                "alerts_per_payload": w.alerts_per_payload,
                "distinct_alerts": w.distinct_alerts,
                "seconds": seconds,
                "rss_start_mb": start_rss,
                "rss_end_mb": end_rss,
                "rss_peak_mb": max(x[2] for x in samples),
                "rss_at_1m_alerts_mb": at_million[2] if at_million else None,
                "rss_second_half_min_mb": min(x[2] for x in half),
                "rss_second_half_max_mb": max(x[2] for x in half),
                "samples": samples,
                "non2xx": r.non2xx,
                "errors": r.errors,
                "alerts_per_s": r.alerts_per_s,
            }
            log(
                f"memory: {start_rss:.0f} MB -> {end_rss:.0f} MB after {sent[0]} alerts "
                f"({seconds:.0f}s, non2xx {r.non2xx})"
            )
        finally:
            self.pg.drop(db)

    def pg_stats(self) -> None:
        """Top statements by total time across the bench databases (with --pg-stat-statements)."""
        try:
            with self.pg.connect() as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                rows = conn.execute("""
                    SELECT calls, total_exec_time, mean_exec_time, total_plan_time, rows,
                           left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
                    FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 15""").fetchall()
            self.results["pg_stat_statements"] = [
                {"calls": c, "total_ms": t, "mean_ms": m, "plan_ms": pl, "rows": n, "query": q}
                for c, t, m, pl, n, q in rows
            ]
        except Exception as e:
            log(f"pg_stat_statements: {e}")


def _batches(bases: list[str]) -> dict[str, float]:
    """Group commit, read from the receivers' /metrics: ingest transactions and the webhooks they wrote (a
    receiver without these counters, such as an older candidate, gives nothing)."""
    totals = {"receiver_ingest_transactions_total": 0.0, "receiver_ingest_webhooks_total": 0.0}
    for base in bases:
        try:
            with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in totals:
                totals[name] += float(value)
    tx, webhooks = totals.values()
    return {"ingest_transactions": tx, "ingest_webhooks": webhooks} if tx else {}


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def _time_ticks(db: str, n: int, ack_timeout: str | None) -> dict[str, Any]:
    from receiver.config import parse_config
    from receiver.database import create_pool
    from receiver.escalation import Escalator
    from receiver.store import Store
    from receiver.timeutil import utcnow

    text = f"escalation:\n  ack_timeout: {ack_timeout}\n" if ack_timeout else ""
    config = parse_config(text, env={})
    pool = await create_pool(db, min_size=1, max_size=2)
    try:
        esc = Escalator(config, Store(pool))
        escalated = 0
        for _ in range(5):  # warm the pool, the statement cache and the buffer cache
            await esc.tick(utcnow())
        times: list[float] = []
        for _ in range(n):
            t = time.perf_counter()
            res = await esc.tick(utcnow())
            times.append(time.perf_counter() - t)
            escalated += len(res.escalations) + len(res.stale_resolved) + res.unsilenced + res.ack_timeouts
    finally:
        await pool.close()
    times.sort()
    return {
        "n": n,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": loadgen.percentile(times, 95) * 1000,
        "max_ms": times[-1] * 1000,
        "escalated": escalated,
    }


def machine(pg: Postgres) -> dict[str, Any]:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    import psutil

    return {
        "nproc": sh("nproc"),
        "lscpu": sh("lscpu | head -14"),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": pg.version(),
        "pg_settings": pg.settings(),
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("sections", nargs="*", default=["all"], help=f"all, or some of: {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test (a few seconds per row)")
    p.add_argument("--sizes", default="1,10,100", help="alerts per payload")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every row")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (after warm-up)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds per run before measuring")
    p.add_argument(
        "--record-factor",
        type=float,
        default=1.5,
        help="the capture for the SQL replay runs this many times --duration",
    )
    p.add_argument("--concurrency", type=int, default=16, help="requests (transactions) in flight")
    p.add_argument(
        "--http-client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the load generator's HTTP client: bench/loadgen.py's LeanHttpClient, or aiohttp's (as before "
        "2026-11-30; it costs the shared cores 2.4-2.6x the CPU per request)",
    )
    p.add_argument("--routes", type=int, default=50)
    p.add_argument("--kinds", type=int, default=3)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--resolved-share", type=float, default=0.2, help="share of resolved alerts in the stream")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--alerta", action="store_true", help="also measure alerta-server (installs its own venv)")
    p.add_argument(
        "--alerta-duration",
        type=float,
        default=12.0,
        help="measured seconds per alerta run (it answers a 100-alert payload in seconds)",
    )
    p.add_argument(
        "--paced-rates",
        default="1:1000,10:6000,100:15000,100:20000",
        help="the paced section's loads, as alerts-per-payload:alerts-per-second pairs",
    )
    p.add_argument(
        "--paced-duration",
        type=float,
        default=10.0,
        help="measured seconds per paced run: a p99 needs a few thousand requests",
    )
    p.add_argument(
        "--paced-max-in-flight",
        type=int,
        default=64,
        help="paced runs: a due request is shed (not sent, counted) while this many are unanswered",
    )
    p.add_argument("--storm-size", type=int, default=100)
    p.add_argument("--storm-duration", type=float, default=5.0)
    p.add_argument("--history-incidents", type=int, default=1_000_000)
    p.add_argument("--history-size", type=int, default=10, help="alerts per payload in the history runs")
    p.add_argument("--tick-incidents", type=int, default=100_000)
    p.add_argument("--ticks", type=int, default=200)
    p.add_argument("--page-incidents", type=int, default=10_000)
    p.add_argument("--page-requests", type=int, default=30)
    p.add_argument(
        "--page-members",
        type=int,
        default=20_000,
        help="member alerts and timeline events added to one incident of the pages section",
    )
    p.add_argument(
        "--blocking-sizes",
        default="1000,20000",
        help="alerts per big webhook in the blocking section (rounded up to whole routes x kinds)",
    )
    p.add_argument("--blocking-bodies", type=int, default=3, help="big webhooks sent one after another per run")
    p.add_argument(
        "--memory-alerts",
        type=int,
        default=250_000,
        help="alerts to send in the memory run (the target speaks of 1,000,000)",
    )
    p.add_argument("--memory-size", type=int, default=100, help="alerts per payload in the memory run")
    p.add_argument("--memory-routes", type=int, default=500, help="routes in the memory run (x kinds x instances)")
    p.add_argument("--memory-max-seconds", type=float, default=900.0)
    p.add_argument("--memory-sample-every", type=float, default=2.0)
    p.add_argument(
        "--candidate",
        metavar="DIR",
        help="also measure the receiver from another source tree (a checkout with receiver/, migrations/,"
        " templates/) side by side: ingest, storm and history rows; history uses the same schema",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="when > 1, also measure that many receiver processes on one database (requests take turns)",
    )
    p.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the bench server (ALTER SYSTEM, restart)",
    )
    p.add_argument("--pg-stat-statements", action="store_true", help="collect and report pg_stat_statements")
    p.add_argument("--out", help="write all results as JSON here")
    p.add_argument("--markdown", help="write the report (markdown) here as well as to stdout")
    p.add_argument("--logdir", help="server and subprocess logs (default: a temporary directory, kept on failure)")
    p.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run the working tree's code directly instead of a private copy taken at the start",
    )
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s]
    args.blocking_sizes = [int(s) for s in str(args.blocking_sizes).split(",") if s]
    args.paced_rates = [
        (int(size), float(rate))
        for size, rate in (pair.split(":") for pair in str(args.paced_rates).split(",") if pair)
    ]
    if args.quick:  # every section, tiny: the smoke test (tests/test_bench_smoke.py)
        args.sizes = [10]
        args.repeats = 1
        args.duration = args.storm_duration = args.paced_duration = 0.6
        args.warmup = 0.2
        args.history_incidents = 1000
        args.tick_incidents = 1000
        args.ticks = 5
        args.page_incidents = 100
        args.page_requests = 2
        args.page_members = 300
        args.memory_alerts = 300
        args.memory_size = 10
        args.memory_routes = args.routes
        args.memory_sample_every = 0.2
        args.alerta_duration = 2.0
        args.blocking_sizes = [150, 1000]
        args.paced_rates = [(10, 500.0)]
        args.blocking_bodies = 1
    sections = list(SECTIONS) if "all" in args.sections else args.sections
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    args.sections = sections
    return args


SNAPSHOT_ENV = "RECEIVER_BENCH_SNAPSHOT"


def source_digest(root: Path) -> str:
    """A short digest of the receiver's code and schema, to tell which code a table measured."""
    import hashlib

    h = hashlib.sha256()
    for pattern in ("receiver/**/*.py", "receiver/**/*.sql", "migrations/*.sql"):
        for f in sorted(root.glob(pattern)):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _snapshot_and_rerun(argv: list[str]) -> int:
    """Copy the code (receiver, migrations, templates, bench) to a private directory and run the benchmark from
    there, so that edits made to the working tree while it runs cannot mix two versions in one table."""
    import shutil

    src = Path(tempfile.mkdtemp(prefix="receiver-bench-src-"))
    try:
        for name in ("receiver", "migrations", "templates", "bench"):
            shutil.copytree(servers.ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        args = list(argv)
        for i, a in enumerate(args):  # relative paths in options stay relative to where the command was run
            for opt in ("--out", "--markdown", "--logdir"):
                if a == opt and i + 1 < len(args):
                    args[i + 1] = str(Path(args[i + 1]).resolve())
                elif a.startswith(opt + "="):
                    args[i] = f"{opt}={Path(a.split('=', 1)[1]).resolve()}"
        env = dict(os.environ, PYTHONPATH=str(src), **{SNAPSHOT_ENV: str(servers.ROOT)})
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=src, env=env).returncode
    finally:
        shutil.rmtree(src, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from .report import markdown

    raw_argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get(SNAPSHOT_ENV) and "--no-snapshot" not in raw_argv:
        return _snapshot_and_rerun(raw_argv)
    args = parse_args(argv)
    started = time.monotonic()
    bench = Bench(args)
    failed = True
    try:
        for section in args.sections:
            t = time.monotonic()
            getattr(bench, section)()
            bench.results.setdefault("section_seconds", {})[section] = time.monotonic() - t
        if args.pg_stat_statements:
            bench.pg_stats()
        failed = False
    finally:
        bench.results["total_seconds"] = time.monotonic() - started
        bench.results["loadavg_at_end"] = os.getloadavg()
        if args.out:
            Path(args.out).write_text(json.dumps(bench.results, indent=1, default=str))
        bench.close(failed)
    text = markdown(bench.results)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    log(f"done in {time.monotonic() - started:.0f}s")
    return 0
