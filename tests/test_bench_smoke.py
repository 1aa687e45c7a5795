"""The benchmark harness runs end to end at tiny sizes (`python -m bench --quick`), so that it cannot rot.

No timing assertions: only that every section produced numbers and that no request failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the harness starts its own server
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--logdir", str(tmp_path / "logs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
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
    memory = results["memory"]
    assert memory["rss_end_mb"] > 0 and memory["non2xx"] == 0 and memory["errors"] == 0
    assert "### Targets" in proc.stdout
