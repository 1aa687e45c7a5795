"""In-process CPU per alert of ingest's Python work, without a database: parse, dedupe, map, plan, encode.

Each payload of bench/payloads.py goes through `parse_body`, `correlation.dedupe`, the Ingestor's cached
mapping, `correlation.plan_batch` (a batch of one; `correlation.plan` in trees before group commit, or with
PROFILE_INGEST_PLAN=1) against the state the store would read for it (kept here in memory: the incidents
of its keys and the members of its fingerprints, as the previous payloads left them), and the encoding of the
plan as the store's record sets. The same script runs against any tree of the receiver, so two commits compare
on the same workload:

    python bench/profile_ingest.py                               # the installed tree
    python bench/profile_ingest.py --tree /tmp/before-04bca76    # e.g. `git archive 04bca76` unpacked there
    python bench/profile_ingest.py --alerts 10 --profile 25      # cProfile, top 25 functions by own time

Run it from outside the checkout (or with --tree) so that the tree asked for is the one imported. Figures are
the best of --repeat runs of --payloads payloads (after a warm-up that fills the mapping cache), in us per alert.
Not timed: building the state from the previous plans (the store reads it from the database). No heartbeats are
configured. The split printed is parse+dedupe+map, plan, encode.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import importlib.util
import inspect
import os
import pstats
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def _load_payloads() -> Any:
    spec = importlib.util.spec_from_file_location("_bench_payloads", Path(__file__).with_name("payloads.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class _Sim:
    """What the store holds, in memory: incidents and the latest instance of each member, advanced by plans."""

    def __init__(self, correlation: Any):
        self.c = correlation
        self.incidents: dict[Any, Any] = {}
        self.active: dict[str, Any] = {}
        self.latest_resolved: dict[str, Any] = {}
        self.members: dict[str, Any] = {}
        self.member_has_resolver = "resolved_by" in {f.name for f in dataclasses.fields(correlation.MemberState)}

    def state(self, alerts: list[Any], mappings: dict[str, Any]) -> Any:
        """The rows ingest_state would read: incidents of the keys (active, or latest resolved), members."""
        c = self.c
        copies: dict[Any, Any] = {}

        def copy(inc: Any) -> Any:
            if inc.id not in copies:
                copies[inc.id] = dataclasses.replace(inc, metadata=dict(inc.metadata), firing=set(inc.firing))
            return copies[inc.id]

        st = c.State(active={}, reopenable={}, incidents={}, members={})
        for a in alerts:
            key = mappings[a.fingerprint].incident_key
            if key in self.active:
                st.active[key] = copy(self.active[key])
            elif key in self.latest_resolved:
                st.reopenable[key] = copy(self.latest_resolved[key])
            m = self.members.get(a.fingerprint)
            if m is not None:
                st.members[a.fingerprint] = m
                st.incidents[m.incident_id] = copy(self.incidents[m.incident_id])
        for inc in copies.values():
            st.incidents[inc.id] = inc
        return st

    def advance(self, plan: Any, now: datetime) -> None:
        c = self.c
        for ni in plan.new_incidents:
            inc = c.IncidentState(
                ni.id, ni.incident_key, "open", ni.severity, dict(ni.metadata), set(), kind=ni.kind, first_seen=now
            )
            self.incidents[ni.id] = inc
            self.active[ni.incident_key] = inc
        for inc_id, ch in plan.changes.items():
            inc = self.incidents[inc_id]
            inc.severity, inc.status, inc.metadata, inc.flap_count = (
                ch.severity,
                str(ch.status),
                dict(ch.metadata),
                ch.flap_count,
            )
            if inc.status == "resolved":
                inc.resolved_at = now
                if self.active.get(inc.incident_key) is inc:
                    del self.active[inc.incident_key]
                self.latest_resolved[inc.incident_key] = inc
            else:
                inc.resolved_at = None
                self.active[inc.incident_key] = inc
        for m in plan.members:
            fp = m.alert.fingerprint
            extra = {"resolved_by": getattr(m, "resolved_by", None)} if self.member_has_resolver else {}
            self.members[fp] = c.MemberState(fp, m.incident_id, str(m.status), m.alert.starts_at, **extra)
            inc = self.incidents.get(m.incident_id)
            if inc is not None:
                (inc.firing.add if m.status == "firing" else inc.firing.discard)(fp)


class _Pipeline:
    """One tree's ingest work for a payload, found by name in whichever tree is imported."""

    def __init__(self) -> None:
        from receiver import correlation
        from receiver import store as store_module
        from receiver.config import parse_config
        from receiver.ingest import alertmanager
        from receiver.ingest.service import Ingestor

        self.correlation = correlation
        self.parse_body = alertmanager.parse_body
        config = parse_config("")
        self.ingestor = Ingestor.__new__(Ingestor)  # no store, no batcher: only map() and owner_snapshot()
        self.ingestor.config = config
        self.ingestor.map_cache = _new_cache(Ingestor)
        self.plan_kwargs = set(inspect.signature(correlation.plan).parameters)
        if hasattr(store_module, "_plan_records"):  # typed record sets (since the group commit work)
            records = store_module._plan_records
            if "now" in inspect.signature(records).parameters:  # records carry their webhook's time
                self.encode = lambda plan, now: records(plan, now, frozenset({"critical"}), "alertmanager/default")
            else:
                self.encode = lambda plan, now: records(plan, frozenset({"critical"}), "alertmanager/default")
        else:
            args = store_module._apply_args
            self.encode = lambda plan, now: args(plan, now, frozenset({"critical"}))
        self.heartbeats: Any = None
        try:
            from receiver import heartbeats

            self.heartbeats = heartbeats
        except ImportError:
            pass
        self.config = config
        self.sim = _Sim(correlation)
        # since group commit, ingest plans through plan_batch (see receiver/ingest/batcher.py)
        self.batch = hasattr(correlation, "plan_batch") and not os.environ.get("PROFILE_INGEST_PLAN")
        self.split = [0.0, 0.0, 0.0]  # seconds in parse+dedupe+map, plan, encode

    def run(self, body: bytes, now: datetime, *, timed: bool = True) -> float:
        t0 = time.perf_counter()
        notification = self.parse_body(body)
        alerts = self.correlation.dedupe(notification.alerts)
        if self.heartbeats is not None:  # as Ingestor.ingest does; no heartbeats configured, no store reached
            alerts, _ = _run_sync(
                self.heartbeats.take_pings(
                    None, self.config.heartbeats, alerts, getattr(notification, "sender", "alertmanager"), now
                )
            )
        mappings = {a.fingerprint: self.ingestor.map(a.labels) for a in alerts}
        t1 = time.perf_counter()
        state = self.sim.state(alerts, mappings)  # the database read: not timed
        t2 = time.perf_counter()
        kwargs: dict[str, Any] = {
            "external_url": notification.external_url,
            "owner_snapshot": self.ingestor.owner_snapshot,
        }
        if "actor" in self.plan_kwargs:
            kwargs["actor"] = "alertmanager"
        if self.batch:  # what the batcher calls, here with a batch of one webhook
            plan = self.correlation.plan_batch(
                [self.correlation.Webhook(alerts, mappings, now, now - timedelta(hours=1), **kwargs)], state
            )[0]
        else:
            plan = self.correlation.plan(alerts, mappings, state, now, **kwargs)
        t3 = time.perf_counter()
        self.encode(plan, now)
        t4 = time.perf_counter()
        self.sim.advance(plan, now)
        self.split[0] += t1 - t0
        self.split[1] += t3 - t2
        self.split[2] += t4 - t3
        return (t1 - t0) + (t4 - t2)


def _new_cache(ingestor_class: Any) -> Any:
    module = sys.modules[ingestor_class.__module__]
    return module.SizedLRU(module.MAP_CACHE_BYTES, module._mapping_entry_size)


def _run_sync(coro: Any) -> Any:
    # take_pings returns at once when no heartbeat is configured: drive the coroutine without an event loop
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("take_pings awaited: configure no heartbeats for this benchmark")


def measure(alerts_per_payload: int, payloads: int, repeat: int, profile: int) -> tuple[float, list[float]]:
    pm = _load_payloads()
    pipeline = _Pipeline()
    stream = pm.PayloadStream(pm.Workload(alerts_per_payload=alerts_per_payload))
    now = datetime.now(UTC)
    warm = max(payloads // 2, 2 * pm.Workload().distinct_alerts // alerts_per_payload)
    bodies = [stream.next() for _ in range(warm + payloads * repeat)]
    step = timedelta(milliseconds=100)
    for body, _ in bodies[:warm]:
        now += step
        pipeline.run(body, now)
    best = float("inf")
    profiler = cProfile.Profile() if profile else None
    split: list[float] = []
    for r in range(repeat):
        chunk = bodies[warm + r * payloads : warm + (r + 1) * payloads]
        n = sum(count for _, count in chunk)
        pipeline.split = [0.0, 0.0, 0.0]
        if profiler:
            profiler.enable()
        spent = 0.0
        for body, _ in chunk:
            now += step
            spent += pipeline.run(body, now)
        if profiler:
            profiler.disable()
        if spent / n * 1e6 < best:
            best, split = spent / n * 1e6, [x / n * 1e6 for x in pipeline.split]
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return best, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="import `receiver` from this directory (a checkout or an archive)")
    parser.add_argument("--alerts", type=int, action="append", help="alerts per payload (repeatable; 1, 10, 100)")
    parser.add_argument("--payloads", type=int, default=0, help="payloads per run (default: 10,000 alerts' worth)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions by own time")
    opts = parser.parse_args()
    if opts.tree:
        sys.path.insert(0, str(Path(opts.tree).resolve()))
    import receiver

    print(f"receiver from {Path(receiver.__file__).parent}")
    for n in opts.alerts or [1, 10, 100]:
        payloads = opts.payloads or max(10_000 // n, 50)
        us, (parse, plan, encode) = measure(n, payloads, opts.repeat, opts.profile)
        print(
            f"{n:>4} alerts/payload: {us:7.1f} us per alert (parse+map {parse:.1f}, plan {plan:.1f}, "
            f"encode {encode:.1f}; best of {opts.repeat} x {payloads} payloads)"
        )


if __name__ == "__main__":
    main()
