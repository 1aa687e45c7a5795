"""The results as markdown: the tables of BENCHMARKS.md and the targets of the benchmark issue."""

from __future__ import annotations

from typing import Any

# The issue's own measurement of alerta-server, used for the ratio when --alerta was not given.
ALERTA_REFERENCE = {"1": 44.0, "10": 92.0, "100": 96.0}
ROW_NAMES = {
    "receiver": "receiver over HTTP",
    "candidate": "candidate receiver over HTTP (--candidate)",
    "replicas": "receiver over HTTP, several processes (--replicas)",
    "sql": "raw SQL ceiling (replayed statements, no HTTP)",
    "ingestor": "Ingestor without HTTP",
    "http": "HTTP ceiling (aiohttp, json.loads, 200)",
    "fixed16": "fixed ceiling (raw asyncpg correlation, 16 transactions in flight)",
    "fixed4": "fixed ceiling (raw asyncpg correlation, 4 transactions in flight)",
    "alerta": "alerta-server 9.1.0 (gunicorn, 2 workers)",
}

CLIENT_NAMES = {"lean": "lean (bench/loadgen.py's LeanHttpClient)", "aiohttp": "aiohttp"}


def _f(v: float, digits: int = 0) -> str:
    if v >= 100 or digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _mmm(s: dict[str, float], digits: int = 0) -> str:
    return f"{_f(s['median'], digits)} ({_f(s['min'], digits)}–{_f(s['max'], digits)})"


def _ratio(s: dict[str, float]) -> str:
    return f"{s['median']:.2f}x ({s['min']:.2f}–{s['max']:.2f})"


def markdown(r: dict[str, Any]) -> str:
    out: list[str] = []
    targets: list[tuple[str, str, str]] = []  # (target, measured, verdict)
    opts = r.get("options", {})

    if "ingest" in r:
        out.append(
            f"### Ingest: {opts.get('concurrency')} requests in flight, median of {opts.get('repeats')} "
            f"interleaved runs (min–max)\n"
        )
        out.append("| alerts/payload | row | alerts/s | requests/s | p50 ms | p95 ms | p99 ms | non-2xx |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for size, data in r["ingest"].items():
            for row, v in data["rows"].items():
                s = v["summary"]
                out.append(
                    f"| {size} | {ROW_NAMES.get(row, row)} | {_mmm(s['alerts_per_s'])} | "
                    f"{_mmm(s['requests_per_s'], 1)} | {_f(s['p50_ms']['median'], 1)} | "
                    f"{_f(s['p95_ms']['median'], 1)} | {_f(s['p99_ms']['median'], 1)} | "
                    f"{s['non2xx'] + s['errors']} |"
                )
        out.append("")
        out.append("Ratios of alerts/s, taken within each repeat (median, min–max):\n")
        out.append(
            "| alerts/payload | receiver / raw SQL ceiling | receiver / fixed ceiling 16 "
            "| receiver / fixed ceiling 4 | receiver / Ingestor | receiver / HTTP ceiling | receiver / alerta |"
        )
        out.append("|---:|---:|---:|---:|---:|---:|---:|")
        for size, data in r["ingest"].items():
            ra = data["ratios"]
            alerta = ra.get("receiver/alerta")
            if alerta:
                alerta_s = _ratio(alerta)
            else:
                rec = data["rows"].get("receiver", {}).get("summary", {}).get("alerts_per_s", {}).get("median", 0)
                ref = ALERTA_REFERENCE.get(size)
                alerta_s = f"{rec / ref:.0f}x vs the issue's {ref:.0f}/s" if ref and rec else "–"
            out.append(
                f"| {size} | {_ratio(ra['receiver/sql']) if 'receiver/sql' in ra else '–'} | "
                f"{_ratio(ra['receiver/fixed16']) if 'receiver/fixed16' in ra else '–'} | "
                f"{_ratio(ra['receiver/fixed4']) if 'receiver/fixed4' in ra else '–'} | "
                f"{_ratio(ra['receiver/ingestor']) if 'receiver/ingestor' in ra else '–'} | "
                f"{_ratio(ra['receiver/http']) if 'receiver/http' in ra else '–'} | {alerta_s} |"
            )
            if "receiver/sql" in ra:
                m = ra["receiver/sql"]["median"]
                targets.append(
                    (
                        f"ingest >= 0.8x the database ceiling at {size} alert(s)/payload",
                        f"{m:.2f}x",
                        "met" if m >= 0.8 else f"missed by {0.8 - m:.2f}x ({(0.8 - m) / 0.8:.0%})",
                    )
                )
            if "receiver/fixed16" in ra:
                m, goal = ra["receiver/fixed16"]["median"], 1.0 if size == "1" else 0.8
                targets.append(
                    (
                        f"ingest >= {goal:.1f}x the fixed ceiling (16 in flight) at {size} alert(s)/payload",
                        f"{m:.2f}x",
                        "met" if m >= goal else f"missed by {goal - m:.2f}x ({(goal - m) / goal:.0%})",
                    )
                )
            want = {"1": 40, "100": 100}.get(size)
            if want:
                rec = data["rows"].get("receiver", {}).get("summary", {}).get("alerts_per_s", {}).get("median", 0)
                if alerta:
                    m, how = alerta["median"], "measured alerta"
                else:
                    m, how = rec / ALERTA_REFERENCE[size], f"the issue's alerta figure {ALERTA_REFERENCE[size]:.0f}/s"
                targets.append(
                    (
                        f">= {want}x alerta at {size} alert(s)/payload",
                        f"{m:.0f}x ({how})",
                        "met" if m >= want else f"missed by {want - m:.0f}x ({(want - m) / want:.0%})",
                    )
                )
            if size == "1" and "receiver" in data["rows"]:
                p99 = data["rows"]["receiver"]["summary"]["p99_ms"]["median"]
                targets.append(
                    (
                        "p99 <= 25 ms at 1 alert/payload",
                        f"{p99:.1f} ms",
                        "met" if p99 <= 25 else f"missed by {p99 - 25:.1f} ms ({(p99 - 25) / 25:.0%})",
                    )
                )
        out.append("")
        reps = [(size, data["ratios"]) for size, data in r["ingest"].items() if "replicas/receiver" in data["ratios"]]
        if reps:
            out.append(f"{opts.get('replicas')} receiver processes (--replicas):\n")
            out.append("| alerts/payload | replicas / one receiver | replicas / raw SQL ceiling |")
            out.append("|---:|---:|---:|")
            for size, ra in reps:
                out.append(f"| {size} | {_ratio(ra['replicas/receiver'])} | {_ratio(ra['replicas/sql'])} |")
            out.append("")
        cand = [(size, data["ratios"]) for size, data in r["ingest"].items() if "candidate/receiver" in data["ratios"]]
        if cand:
            out.append(
                f"Candidate tree `{r.get('candidate', {}).get('path')}` (code {r.get('candidate', {}).get('code')}):\n"
            )
            out.append(
                "| alerts/payload | candidate / receiver | candidate / raw SQL ceiling "
                "| candidate / fixed ceiling 16 | candidate / fixed ceiling 4 |"
            )
            out.append("|---:|---:|---:|---:|---:|")
            for size, ra in cand:
                out.append(
                    f"| {size} | {_ratio(ra['candidate/receiver'])} | "
                    f"{_ratio(ra['candidate/sql']) if 'candidate/sql' in ra else '–'} | "
                    f"{_ratio(ra['candidate/fixed16']) if 'candidate/fixed16' in ra else '–'} | "
                    f"{_ratio(ra['candidate/fixed4']) if 'candidate/fixed4' in ra else '–'} |"
                )
            out.append("")
        batch_rows = [
            (size, row, v["runs"])
            for size, data in r["ingest"].items()
            for row, v in data["rows"].items()
            if any(run.get("extra", {}).get("ingest_transactions") for run in v["runs"])
        ]
        if batch_rows:
            out.append(
                "Group commit: webhooks per ingest transaction (from the receiver's /metrics, whole run, "
                "warm-up included; one figure per repeat):\n"
            )
            out.append("| alerts/payload | row | webhooks / transaction | transactions |")
            out.append("|---:|---|---|---|")
            for size, row, runs in batch_rows:
                ex = [run["extra"] for run in runs if run.get("extra", {}).get("ingest_transactions")]
                out.append(
                    f"| {size} | {ROW_NAMES.get(row, row)} | "
                    + ", ".join(f"{e['ingest_webhooks'] / e['ingest_transactions']:.2f}" for e in ex)
                    + " | "
                    + ", ".join(f"{e['ingest_transactions']:.0f}" for e in ex)
                    + " |"
                )
            out.append("")
        out.append(
            "CPU time per alert in µs (median over the runs; all requests of a run, warm-up included). "
            "'process' is the server, or the ceiling's own process; the load generator is the bench's "
            f"{CLIENT_NAMES.get(opts.get('http_client', 'aiohttp'), 'HTTP')} client. On a shared machine this is "
            "steadier than throughput.\n"
        )
        out.append("| alerts/payload | row | process | PostgreSQL | load generator | total |")
        out.append("|---:|---|---:|---:|---:|---:|")
        for size, data in r["ingest"].items():
            for row, v in data["rows"].items():
                s = v["summary"]
                parts = [
                    s.get(k, {}).get("median")
                    for k in ("cpu_s_us_per_alert", "pg_cpu_s_us_per_alert", "client_cpu_s_us_per_alert")
                ]
                total = sum(p for p in parts if p)
                cells = " | ".join(f"{p:,.0f}" if p else "–" for p in parts)
                out.append(f"| {size} | {ROW_NAMES.get(row, row)} | {cells} | {total:,.0f} |")
        out.append("")
        if r.get("alerta_error"):
            out.append(f"alerta-server: {r['alerta_error']}\n")

    if "paced" in r:
        pc = r["paced"]
        out.append(
            f"### Latency at a fixed load: requests sent at a fixed rate whatever the answers (an open loop, as "
            f"Alertmanager sends), latency from when each was due, at most {pc['max_in_flight']} in flight; "
            f"median of {opts.get('repeats')} runs (min–max)\n"
        )
        out.append(
            "| alerts/payload | offered alerts/s | row | answered alerts/s | p50 ms | p95 ms | p99 ms | max ms "
            "| shed | non-2xx |"
        )
        out.append("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for load in pc["loads"]:
            for row, v in load["rows"].items():
                s = v["summary"]
                out.append(
                    f"| {load['alerts_per_payload']} | {load['offered_alerts_per_s']:,.0f} | "
                    f"{ROW_NAMES.get(row, row)} | "
                    f"{_mmm(s['alerts_per_s'])} | {_mmm(s['p50_ms'], 1)} | {_f(s['p95_ms']['median'], 1)} | "
                    f"{_mmm(s['p99_ms'], 1)} | {_f(s['max_ms']['median'], 1)} | {s.get('shed', 0)} | "
                    f"{s['non2xx'] + s['errors']} |"
                )
        out.append("")

    if "storm" in r:
        st = r["storm"]
        out.append(
            f"### Alert storm: every payload is the same group of {st['alerts_per_payload']} alerts "
            f"({st['keys']} incidents), median of {opts.get('repeats')} runs (min–max)\n"
        )
        out.append("| variant | alerts/s | requests/s | p50 ms | p95 ms | p99 ms | max ms | non-2xx |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, v in st["variants"].items():
            s = v["summary"]
            out.append(
                f"| {name} | {_mmm(s['alerts_per_s'])} | {_mmm(s['requests_per_s'], 1)} | "
                f"{_f(s['p50_ms']['median'], 1)} | {_f(s['p95_ms']['median'], 1)} | {_mmm(s['p99_ms'], 1)} | "
                f"{_f(s['max_ms']['median'], 1)} | {s['non2xx'] + s['errors']} |"
            )
        out.append("")
        v = st["variants"]
        if "receiver c16" in v:
            rec = v["receiver c16"]["summary"]
            others = [n for n in ("raw SQL c16", "raw SQL c4") if n in v]
            if others:
                best_tp = max(v[n]["summary"]["alerts_per_s"]["median"] for n in others)
                best_p99 = min(v[n]["summary"]["p99_ms"]["median"] for n in others)
                tp, p99 = rec["alerts_per_s"]["median"], rec["p99_ms"]["median"]
                targets.append(
                    (
                        "storm: throughput above the ceiling at both 16 and 4 transactions",
                        f"{tp:,.0f} vs best {best_tp:,.0f} alerts/s",
                        "met" if tp >= best_tp else f"missed by {(best_tp - tp) / best_tp:.0%}",
                    )
                )
                targets.append(
                    (
                        "storm: p99 below the ceiling's at both 16 and 4 transactions",
                        f"{p99:,.0f} ms vs best {best_p99:,.0f} ms",
                        "met" if p99 <= best_p99 else f"missed by {p99 - best_p99:,.0f} ms",
                    )
                )

    if "history" in r:
        h = r["history"]
        pre = h["preload"]
        rows = pre["rows"]
        out.append(
            f"### History: {h['incidents']:,} resolved incidents preloaded ({rows.get('incident_alerts', 0):,} "
            f"member alerts, {rows.get('incident_events', 0):,} timeline events, {pre['size']}) vs an empty "
            f"database; receiver over HTTP at {h['alerts_per_payload']} alerts/payload\n"
        )
        out.append("| database | alerts/s | p50 ms | p99 ms | non-2xx |")
        out.append("|---|---:|---:|---:|---:|")
        for name, v in h["variants"].items():
            s = v["summary"]
            out.append(
                f"| {name} | {_mmm(s['alerts_per_s'])} | {_f(s['p50_ms']['median'], 1)} | "
                f"{_mmm(s['p99_ms'], 1)} | {s['non2xx'] + s['errors']} |"
            )
        out.append(f"\nhistory / empty (within each repeat): {_ratio(h['ratio'])}\n")
        if r.get("history_candidate_ratio"):
            out.append(f"candidate: history / empty: {_ratio(r['history_candidate_ratio'])}\n")
        m = h["ratio"]["median"]
        targets.append(
            (
                f"ingest with {h['incidents']:,} resolved incidents within 10% of empty",
                f"{m:.2f}x",
                "met" if m >= 0.9 else f"missed by {0.9 - m:.2f} ({(1 - m):.0%} slower)",
            )
        )

    if "tick" in r:
        t = r["tick"]
        mix = ", ".join(f"{n:,} {st}" for st, n in sorted(t["preload"]["statuses"].items(), key=lambda x: -x[1]))
        out.append(f"### Escalation tick: {t['incidents']:,} active incidents ({mix}), none due\n")
        out.append("| config | ticks | median ms | p95 ms | max ms | work done |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for label in ("default config", "ack_timeout 1h"):
            if label in t:
                x = t[label]
                out.append(
                    f"| {label} | {x['n']} | {x['median_ms']:.2f} | {x['p95_ms']:.2f} | {x['max_ms']:.2f} | "
                    f"{x['escalated']} |"
                )
        out.append("")
        worst = max(t[lb]["median_ms"] for lb in ("default config", "ack_timeout 1h") if lb in t)
        targets.append(
            (
                f"escalation tick < 20 ms with {t['incidents']:,} active, none due",
                f"{worst:.2f} ms (median, worst config)",
                "met" if worst < 20 else f"missed by {worst - 20:.1f} ms",
            )
        )

    if "pages" in r:
        pg = r["pages"]
        storm = f", one of them with {pg['members']:,} member alerts and events" if pg.get("members") else ""
        out.append(
            f"### Status page and /metrics with {pg['incidents']:,} active incidents{storm} "
            "(sequential GETs after one warm-up)\n"
        )
        out.append("| path | requests | p50 ms | p95 ms | max ms | status | bytes |")
        out.append("|---|---:|---:|---:|---:|---|---:|")
        for path, x in pg.items():
            if not isinstance(x, dict):
                continue
            codes = ", ".join(f"{n} x {c}" for c, n in x["statuses"].items())
            out.append(
                f"| `{path}` | {x['n']} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {x['max_ms']:.1f} | "
                f"{codes} | {x['bytes']:,} |"
            )
            if path in ("/", "/metrics"):
                targets.append(
                    (
                        f"`GET {path}` < 100 ms with {pg['incidents']:,} active",
                        f"p50 {x['p50_ms']:.1f} ms, p95 {x['p95_ms']:.1f} ms",
                        "met" if x["p95_ms"] < 100 else f"missed by {x['p95_ms'] - 100:.0f} ms (p95)",
                    )
                )
        out.append("")

    if "blocking" in r:
        bl = r["blocking"]
        out.append(
            f"### A bystander while one big webhook is ingested ({opts.get('blocking_bodies')} big webhooks "
            f"per run, one after another; median of {opts.get('repeats')} runs, max of all)\n"
        )
        out.append(
            "A tiny webhook (one alert, a key of its own) and `GET /healthz` are sent back to back, each on "
            "its own connection; only those in flight during a big webhook count.\n"
        )
        out.append(
            "| big webhook | code | big webhook ms | tiny webhook p50 / p99 / max ms | "
            "`/healthz` p50 / p99 / max ms | probes (webhook, healthz) |"
        )
        out.append("|---|---|---:|---:|---:|---:|")
        for n, x in bl.items():
            for row, v in x["rows"].items():
                s = v["summary"]
                out.append(
                    f"| {int(n):,} alerts ({x['bytes'] / 1e6:.1f} MB) | {ROW_NAMES.get(row, row)} | "
                    f"{s['big_p50_ms']:,.0f} | {s['webhook_p50_ms']:.1f} / {s['webhook_p99_ms']:.1f} / "
                    f"{s['webhook_max_ms']:.1f} | {s['healthz_p50_ms']:.1f} / {s['healthz_p99_ms']:.1f} / "
                    f"{s['healthz_max_ms']:.1f} | {s['webhook_n']:.0f}, {s['healthz_n']:.0f} |"
                )
                if row == "receiver":
                    worst = max(s["webhook_max_ms"], s["healthz_max_ms"])
                    targets.append(
                        (
                            f"a bystander waits < 300 ms while a {int(n):,}-alert webhook is ingested",
                            f"max {worst:,.0f} ms (tiny webhook p99 {s['webhook_p99_ms']:,.0f} ms)",
                            "met" if worst < 300 else f"missed by {worst - 300:,.0f} ms",
                        )
                    )
        out.append("")

    if "memory" in r:
        m = r["memory"]
        growth = m["rss_second_half_max_mb"] - m["rss_second_half_min_mb"]
        out.append(
            f"### Memory: receiver RSS while it ingests {m['alerts_ok']:,} alerts "
            f"({m['alerts_per_payload']}/payload, {m['distinct_alerts']:,} distinct alerts, "
            f"{m['seconds']:.0f} s)\n"
        )
        out.append(
            "| start MB | at 1,000,000 alerts MB | end MB | peak MB | 2nd half min–max MB | alerts/s | non-2xx |"
        )
        out.append("|---:|---:|---:|---:|---:|---:|---:|")
        at_m = m.get("rss_at_1m_alerts_mb")
        out.append(
            f"| {m['rss_start_mb']:.0f} | {f'{at_m:.0f}' if at_m else '–'} | {m['rss_end_mb']:.0f} | "
            f"{m['rss_peak_mb']:.0f} | {m['rss_second_half_min_mb']:.0f}–{m['rss_second_half_max_mb']:.0f} | "
            f"{m['alerts_per_s']:,.0f} | {m['non2xx'] + m['errors']} |"
        )
        samples = m.get("samples") or []
        if len(samples) > 2:
            picks = [samples[round(i * (len(samples) - 1) / 6)] for i in range(7)]
            out.append(
                "\nRSS over the run: " + ", ".join(f"{t:.0f} s / {n:,} alerts: {mb:.0f} MB" for t, n, mb in picks)
            )
        out.append("")
        rss = at_m or m["rss_end_mb"]
        targets.append(
            (
                f"RSS < 150 MB after 1,000,000 alerts (ran {m['alerts_ok']:,})",
                f"{rss:.0f} MB",
                "met" if rss < 150 else f"missed by {rss - 150:.0f} MB",
            )
        )
        targets.append(
            (
                f"RSS flat ({m['seconds'] / 60:.1f}-minute run; target: 10 minutes)",
                f"{growth:+.1f} MB over the second half",
                "met" if growth <= max(5.0, 0.05 * m["rss_end_mb"]) else "missed",
            )
        )

    if "pg_stat_statements" in r:
        out.append("### Top statements (pg_stat_statements, all databases)\n")
        out.append("| calls | total exec ms | mean exec ms | total plan ms | rows | query |")
        out.append("|---:|---:|---:|---:|---:|---|")
        for x in r["pg_stat_statements"]:
            q = x["query"].replace("|", "\\|")
            out.append(
                f"| {x['calls']} | {x['total_ms']:,.0f} | {x['mean_ms']:.3f} | {x.get('plan_ms', 0):,.0f} | "
                f"{x['rows']} | `{q}` |"
            )
        out.append("")

    if targets:
        out.append("### Targets\n")
        out.append("| target | measured | verdict |")
        out.append("|---|---|---|")
        for t_, m_, v_ in targets:
            out.append(f"| {t_} | {m_} | {v_} |")
        out.append("")
    mach = r.get("machine", {})
    out.append(
        f"Code: {r.get('code')} (digest of receiver/ and migrations/). "
        f"Run: {r.get('started')} UTC, {r.get('total_seconds', 0):.0f} s; {mach.get('nproc')} CPUs, "
        f"{mach.get('memory_gib')} GiB, Python {mach.get('python')}, PostgreSQL {mach.get('postgresql')}; "
        f"load average at start {_load(mach.get('loadavg_at_start'))}, at end {_load(r.get('loadavg_at_end'))}."
    )
    return "\n".join(out) + "\n"


def _load(v: Any) -> str:
    try:
        return " ".join(f"{x:.1f}" for x in v)
    except TypeError:
        return "?"
