"""The benchmark harness runs end to end at tiny sizes (`python -m bench --quick`), so that it cannot rot.

No timing assertions: only that every section produced numbers and that no request failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import deadline

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(deadline(300))
def test_bench_quick(tmp_path: Path) -> None:
    # A private temporary directory, so that what the harness leaves there is seen (and nobody else's is). Not
    # under tmp_path: as root, PostgreSQL runs as an unprivileged user, who cannot enter pytest's 0700 directories.
    tmp = Path(tempfile.mkdtemp(prefix="receiver-bench-smoke-"))
    tmp.chmod(0o755)
    try:
        _run_quick(tmp_path, tmp)
    finally:
        left = sorted(path.name for path in tmp.iterdir())
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"the harness left temporary files behind: {left}"


def _run_quick(tmp_path: Path, tmp: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the harness starts its own server
    # XDG_RUNTIME_DIR set: platformdirs would otherwise make its fallback runtime directory in TMPDIR
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmp), XDG_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--logdir", str(tmp_path / "logs")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=deadline(280))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # its `finally` blocks stop PostgreSQL and remove the directories
        stdout, stderr = proc.communicate(timeout=deadline(30))
        pytest.fail(f"python -m bench --quick did not finish in {deadline(280):.0f} s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    results = json.loads(out.read_text())

    def check(summary: dict, where: str) -> None:
        assert summary["alerts_per_s"]["median"] > 0, where
        assert summary["requests"] > 0, where
        assert summary["p99_ms"]["median"] > 0, where
        assert summary["non2xx"] == 0, where
        assert summary["errors"] == 0, where

    for size, data in results["ingest"].items():
        assert set(data["rows"]) >= {"receiver", "sql", "ingestor", "http"}
        for row, v in data["rows"].items():
            check(v["summary"], f"ingest {size} {row}")
        assert data["ratios"]["receiver/sql"]["median"] > 0
    [paced] = results["paced"]["loads"]  # one load at --quick: 10 alerts/payload, 500 alerts/s
    check(paced["rows"]["receiver"]["summary"], "paced receiver")
    # sent on its schedule: about the offered rate answered, nothing shed
    assert paced["rows"]["receiver"]["summary"]["alerts_per_s"]["median"] > paced["offered_alerts_per_s"] / 2
    assert paced["rows"]["receiver"]["summary"]["shed"] == 0
    assert "### Latency at a fixed load" in stdout
    assert len(results["storm"]["variants"]) >= 3
    for name, v in results["storm"]["variants"].items():
        check(v["summary"], f"storm {name}")
    for name, v in results["history"]["variants"].items():
        check(v["summary"], f"history {name}")
    assert results["history"]["preload"]["rows"]["incidents"] == results["history"]["incidents"]
    for label in ("default config", "ack_timeout 1h"):
        assert results["tick"][label]["median_ms"] > 0
    for path in ("/", "/metrics"):
        assert set(results["pages"][path]["statuses"]) == {"200"}, results["pages"][path]
    details = [k for k in results["pages"] if k.startswith(("/incidents/{id}", "/api/incidents/{id}"))]
    assert len(details) == 2, results["pages"].keys()  # the detail page and API of the incident with many members
    for label in details:
        assert set(results["pages"][label]["statuses"]) == {"200"}, results["pages"][label]
    assert len(results["blocking"]) == 2  # a small and a larger big webhook (150 and 1,000 alerts at --quick)
    for n, data in results["blocking"].items():
        for row, v in data["rows"].items():
            for run in v["runs"]:
                assert run["statuses"]["big"] == {"200": data["bodies"]}, (n, row, run["statuses"])
                assert set(run["statuses"]["webhook"]) == set(run["statuses"]["healthz"]) == {"200"}, (n, row)
            s = v["summary"]
            assert s["big_p50_ms"] > 0 and s["webhook_n"] + s["healthz_n"] > 0, (n, row, s)
    assert "A bystander while one big webhook is ingested" in stdout
    memory = results["memory"]
    assert memory["rss_end_mb"] > 0 and memory["non2xx"] == 0 and memory["errors"] == 0
    assert "### Targets" in stdout
