"""The load generator: a fixed number of requests in flight over keep-alive connections, bounded by a
request count and a time limit (a closed loop: how fast can it go), or requests sent at a fixed rate (an open
loop: how long does an answer take at a given load). Loopback targets only.

Closed loop: only 2xx responses that complete inside the measured window (end of the warm-up to the
deadline) are counted, for throughput and for latency; latency is from send to the full response. Open loop
(drive_paced): the 2xx responses to requests *due* inside the window are counted, however late they complete,
and latency is from when each was due. Requests still in flight at the deadline are awaited, so that the
server is idle when the next run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


# What a request can end with when no answer came (counted as errors, not raised)
NO_ANSWER: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientError,
    OSError,
    EOFError,  # asyncio.IncompleteReadError: the server closed mid-answer
    asyncio.LimitOverrunError,
    ValueError,  # an answer the lean client cannot parse
)


class LeanHttpClient:
    """POST over keep-alive HTTP/1.1 connections with as little client work as we can: the request head is
    built once, the answer's status line and framing headers are all that is read (Content-Length, chunked,
    or up to the close). The load generator shares the machine's cores with the server and PostgreSQL, and
    what it spends is taken from them (per 1-alert request here: aiohttp's client 75-106 us, more than the
    server's HTTP work, this one 29-44 us); Alertmanager sends from another machine."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"the lean client speaks plain http only, not {url!r}")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {u.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        self.head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open: set[asyncio.StreamWriter] = set()

    async def post(self, body: bytes) -> int:
        async with asyncio.timeout(self.timeout):
            while self.idle:
                reader, writer = self.idle.pop()
                if not reader.at_eof() and not writer.is_closing():
                    break
                self.open.discard(writer)  # closed by the server while idle
                writer.close()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
                self.open.add(writer)
            keep = False
            try:
                writer.writelines((self.head, b"%d\r\n\r\n" % len(body), body))
                status, keep = await _read_answer(reader)
                return status
            finally:
                if keep:
                    self.idle.append((reader, writer))
                else:
                    self.open.discard(writer)
                    writer.close()

    def close(self) -> None:
        for writer in self.open:
            writer.close()
        self.open.clear()
        self.idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.x answer, past any interim (1xx) ones; (status, whether the connection can carry the
    next request). The body's length as RFC 9112 section 6.3 decides it."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status = int(rest[:3])
        if not 100 <= status < 200 or status == 101:
            break
    length: int | None = None
    codings: list[bytes] = []
    tokens: set[bytes] = set()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            codings += [c.strip() for c in value.split(b",")]
        elif name == b"connection":
            tokens.update(t.strip() for t in value.split(b","))
    keep = b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    if status < 200 or status in (204, 304):
        pass  # no body, whatever the headers say
    elif codings and codings[-1] == b"chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
    elif codings or length is None:
        await reader.read()  # delimited by the close
        keep = False
    else:
        await reader.readexactly(length)
    return status, keep


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


@dataclass
class Result:
    """What one run measured."""

    requests: int = 0  # completed 2xx requests in the measured window
    alerts: int = 0  # alerts in those requests
    non2xx: int = 0  # answered, but not 2xx (whole run, warm-up included)
    errors: int = 0  # no answer at all: connection errors, timeouts (whole run)
    seconds: float = 0.0  # measured window
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def alerts_per_s(self) -> float:
        return self.alerts / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alerts_per_s"] = self.alerts_per_s
        d["requests_per_s"] = self.requests_per_s
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


class Recorder:
    """Collects samples and turns them into a Result.

    Counted: 2xx responses that *completed* inside the measured window, from the end of the warm-up to
    the deadline (or to the last completion when the run ends early by count). Latency percentiles are
    over the same responses. Non-2xx answers and errors are counted over the whole run.
    """

    def __init__(self, warmup: float, duration: float):
        self.t0 = time.perf_counter()
        self.warmup_end = self.t0 + warmup
        self.deadline = self.warmup_end + duration
        self.samples: list[tuple[float, float, int]] = []  # (ended, latency, alerts)
        self.non2xx = 0
        self.errors = 0
        self.statuses: dict[str, int] = {}

    def add(self, started: float, ended: float, alerts: int, status: int | None) -> None:
        key = str(status) if status is not None else "error"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if status is None:
            self.errors += 1
        elif not 200 <= status < 300:
            self.non2xx += 1
        else:
            self.samples.append((ended, ended - started, alerts))

    def result(self, *, by_start: bool = False) -> Result:
        """With `by_start`, the requests counted are those *started* inside the window, however late they
        complete (for a paced run, whose answers after the deadline are part of what it measures)."""
        if by_start:
            end = self.deadline
            counted = [s for s in self.samples if self.warmup_end <= s[0] - s[1] < end]
        else:
            last = max((s[0] for s in self.samples), default=self.warmup_end)
            end = min(self.deadline, last)
            counted = [s for s in self.samples if self.warmup_end <= s[0] <= end]
        lat = sorted(s[1] for s in counted)
        seconds = end - self.warmup_end if counted else 0.0
        return Result(
            requests=len(counted),
            alerts=sum(s[2] for s in counted),
            non2xx=self.non2xx,
            errors=self.errors,
            seconds=seconds,
            p50_ms=percentile(lat, 50) * 1000,
            p95_ms=percentile(lat, 95) * 1000,
            p99_ms=percentile(lat, 99) * 1000,
            max_ms=(lat[-1] * 1000) if lat else 0.0,
            statuses=dict(self.statuses),
            extra={"alerts_total": sum(s[2] for s in self.samples), "requests_total": len(self.samples)},
        )


async def drive(
    work: Callable[[bytes], Awaitable[int | None]],
    bodies: Iterator[tuple[bytes, int]],
    *,
    concurrency: int,
    duration: float,
    max_requests: int,
    warmup: float,
    drain_timeout: float | None = None,
) -> Result:
    """Run `work(body)` (returning a status, or None for no answer) with `concurrency` in flight.
    After the deadline, requests in flight are awaited (at most `drain_timeout` seconds, when given)."""
    rec = Recorder(warmup, duration)
    deadline = rec.deadline
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < max_requests and time.perf_counter() < deadline:
            body, n = next(bodies)
            sent += 1
            started = time.perf_counter()
            try:
                status = await work(body)
            except NO_ANSWER:
                status = None
            rec.add(started, time.perf_counter(), n, status)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    limit = None if drain_timeout is None else warmup + duration + drain_timeout
    _, pending = await asyncio.wait(tasks, timeout=limit)
    for t in pending:  # requests still unanswered after the drain time: abandoned, not counted
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = rec.result()
    result.extra["abandoned"] = len(pending)
    return result


async def drive_paced(
    work: Callable[[bytes], Awaitable[int | None]],
    bodies: Iterator[tuple[bytes, int]],
    *,
    rate: float,
    max_in_flight: int,
    duration: float,
    warmup: float,
    drain_timeout: float | None = None,
) -> Result:
    """Start `work(body)` at `rate` per second, on a fixed schedule whatever the answers do (an open loop, as
    Alertmanager sends: a slow answer does not slow the sender down). Latency counts from the time a request
    was *due*, so a client that fell behind its schedule cannot hide the wait (no coordinated omission). When
    `max_in_flight` requests are sent and unanswered, a due request is not sent but counted as `shed`: the
    server is past its capacity at this rate, and the percentiles no longer describe it. (Requests that fell
    due while this client was stalled are sent together when it resumes, and count from their due time.)"""
    rec = Recorder(warmup, duration)
    tasks: set[asyncio.Task[None]] = set()
    shed = 0
    in_flight = 0  # sent and not answered: tasks created in a burst after a client stall are not, yet

    async def one(due: float, body: bytes, n: int) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            status = await work(body)
        except Exception:  # no answer (NO_ANSWER), or a bug in the client: an error, not a request that vanished
            status = None
        finally:
            in_flight -= 1
        rec.add(due, time.perf_counter(), n, status)

    for i in itertools.count():
        due = rec.t0 + i / rate
        if due >= rec.deadline:
            break
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        if in_flight >= max_in_flight:
            shed += 1
            continue
        body, n = next(bodies)
        task = asyncio.ensure_future(one(due, body, n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    pending: set[asyncio.Task[None]] = set()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result = rec.result(by_start=True)
    result.extra.update(abandoned=len(pending), shed=shed, offered_per_s=rate)
    return result


async def run_http(
    url: str | list[str],
    bodies: Iterator[tuple[bytes, int]],
    *,
    concurrency: int = 16,
    duration: float = 10.0,
    max_requests: int = 1_000_000,
    warmup: float = 1.0,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    drain_timeout: float | None = None,
    rate: float | None = None,
    client: str = "lean",
) -> Result:
    """POST webhook bodies to `url` (loopback only) and measure: `concurrency` in flight, or with `rate`,
    that many requests per second (at most `concurrency` in flight, see drive_paced). Several URLs (replicas)
    take turns. `client`: "lean" (LeanHttpClient) or "aiohttp" (its ClientSession)."""
    urls = [url] if isinstance(url, str) else list(url)
    for u in urls:
        check_loopback(u)
    hdrs = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0", **(headers or {})}
    async with contextlib.AsyncExitStack() as stack:
        post: Callable[[bytes], Awaitable[int]]
        if client == "lean":
            lean = [LeanHttpClient(u, hdrs, timeout) for u in urls]
            for c in lean:
                stack.callback(c.close)
            turns = itertools.cycle(lean)

            async def post_lean(body: bytes) -> int:
                return await next(turns).post(body)

            post = post_lean
        elif client == "aiohttp":
            turn = itertools.cycle(urls)
            connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))
            )

            async def post_aiohttp(body: bytes) -> int:
                async with session.post(next(turn), data=body, headers=hdrs) as resp:
                    await resp.read()
                    return resp.status

            post = post_aiohttp
        else:
            raise ValueError(f"unknown client {client!r}")
        if rate is not None:
            return await drive_paced(
                post,
                bodies,
                rate=rate,
                max_in_flight=concurrency,
                duration=duration,
                warmup=warmup,
                drain_timeout=drain_timeout,
            )
        return await drive(
            post,
            bodies,
            concurrency=concurrency,
            duration=duration,
            max_requests=max_requests,
            warmup=warmup,
            drain_timeout=drain_timeout,
        )


async def time_gets(url: str, n: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET `url` n times one after another (after one untimed warm-up); latency percentiles in ms."""
    check_loopback(url)
    lat: list[float] = []
    statuses: dict[str, int] = {}
    size = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for i in range(n + 1):
            t = time.perf_counter()
            async with session.get(url, headers=headers or {}) as resp:
                body = await resp.read()
                status = resp.status
            if i == 0:
                continue
            lat.append(time.perf_counter() - t)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            size = len(body)
    lat.sort()
    return {
        "n": n,
        "p50_ms": percentile(lat, 50) * 1000,
        "p95_ms": percentile(lat, 95) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": lat[-1] * 1000,
        "statuses": statuses,
        "bytes": size,
    }


async def probe_during(
    base: str,
    big_bodies: list[bytes],
    probe: Callable[[int], bytes],
    *,
    settle: float = 0.5,
    gap: float = 0.005,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """POST the big webhook bodies one after another while two probes run back to back, each on its own
    connection: a tiny webhook (`probe(n)`) and GET /healthz. Only probes whose time in flight overlaps a big
    webhook's count: their latency is what a bystander sees while a big body is parsed, mapped and written.
    Latencies in ms: p50, p99, max, n, for the big webhooks, the tiny webhook and /healthz."""
    check_loopback(base)
    hdrs = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    windows: list[tuple[float, float]] = []
    samples: dict[str, list[tuple[float, float]]] = {"webhook": [], "healthz": []}
    statuses: dict[str, dict[str, int]] = {"big": {}, "webhook": {}, "healthz": {}}
    done = asyncio.Event()
    to = aiohttp.ClientTimeout(total=timeout)

    def count(kind: str, status: int) -> None:
        statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + 1

    async def prober(kind: str) -> None:
        async with aiohttp.ClientSession(timeout=to) as s:
            n = 0
            while not done.is_set():
                n += 1
                t = time.perf_counter()
                if kind == "webhook":
                    async with s.post(base + "/webhook", data=probe(n), headers=hdrs) as resp:
                        await resp.read()
                else:
                    async with s.get(base + "/healthz") as resp:
                        await resp.read()
                samples[kind].append((t, time.perf_counter()))
                count(kind, resp.status)
                await asyncio.sleep(gap)

    probers = [asyncio.ensure_future(prober(k)) for k in samples]
    try:
        await asyncio.sleep(settle)  # the probes' connections are open and warm
        async with aiohttp.ClientSession(timeout=to) as s:
            for body in big_bodies:
                t = time.perf_counter()
                async with s.post(base + "/webhook", data=body, headers=hdrs) as resp:
                    await resp.read()
                windows.append((t, time.perf_counter()))
                count("big", resp.status)
                await asyncio.sleep(settle)
    finally:
        done.set()
        await asyncio.gather(*probers, return_exceptions=True)

    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {
            "n": len(values),
            "p50_ms": percentile(values, 50) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "max_ms": (values[-1] * 1000) if values else 0.0,
        }

    def during(kind: str) -> list[float]:
        return [e - s for s, e in samples[kind] if any(s < we and e > ws for ws, we in windows)]

    return {
        "big": stats([e - s for s, e in windows]),
        "webhook": stats(during("webhook")),
        "healthz": stats(during("healthz")),
        "statuses": statuses,
    }
