"""A fixed arrival-rate HTTP/1.1 load generator (open loop) with latency from the *intended* send time.

Requests are scheduled at `start + i / rate` whatever the server does; when every keep-alive
connection is busy the request waits in a backlog and its latency still counts from its scheduled
time, so a slow server cannot hide its slowness by slowing the generator (no coordinated omission).
Bounded by count (rate × seconds) and time. Cheap on purpose (asyncio Protocols, pre-encoded
requests, one in flight per connection): k6 was tried first and could not produce more than
~2k requests/s next to the server on this 2-core machine.

    python -m loadtest.open_loop --url http://127.0.0.1:8080/check --rate 3000 --seconds 10 --bodies b.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")

TICK_SECONDS = 0.001  # dispatch granularity (uvloop timers are 1 ms); latency includes up to one tick


@dataclass
class OpenLoopResult:
    rate: int
    seconds: float
    scheduled: int
    completed: int
    failed: int  # non-200 answers, connection errors, and requests unanswered at the deadline
    p50_ms: float
    p99_ms: float
    max_ms: float
    max_backlog: int
    statuses: dict[int, int] = field(default_factory=dict)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Connection(asyncio.Protocol):
    def __init__(self, generator: _Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.intended: float | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def send(self, request: bytes, intended: float) -> None:
        assert self.transport is not None
        self.intended = intended
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length_at = head.find(b"content-length:")
        length = int(head[length_at + 15:].split(b"\r\n", 1)[0]) if length_at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        intended, self.intended = self.intended, None
        assert intended is not None
        self.generator.answered(self, status, intended)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.intended is not None:
            self.generator.lost(self.intended)
            self.intended = None


class _Generator:
    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[float] = deque()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.failed = 0
        self.sent = 0
        self.max_backlog = 0
        self.expected = 0
        self.finished = asyncio.Event()  # every scheduled request answered or failed

    def _settle(self) -> None:
        if self.expected and len(self.latencies) + self.failed >= self.expected:
            self.finished.set()

    def dispatch(self, intended: float) -> None:
        while self.idle:
            connection = self.idle.popleft()
            if not connection.closed:
                connection.send(self.requests[self.sent % len(self.requests)], intended)
                self.sent += 1
                return
        self.backlog.append(intended)
        self.max_backlog = max(self.max_backlog, len(self.backlog))

    def answered(self, connection: _Connection, status: int, intended: float) -> None:
        self.latencies.append(time.perf_counter() - intended)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != 200:
            self.failed += 1
        self.idle.append(connection)
        if self.backlog:
            self.dispatch(self.backlog.popleft())
        self._settle()

    def lost(self, intended: float) -> None:
        self.failed += 1
        self._settle()


async def run_open_loop(url: str, bodies: list[bytes], rate: int, seconds: float,
                        connections: int = 64, headers: dict[str, str] | None = None) -> OpenLoopResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("loopback targets only")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    requests = [
        (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
         f"{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body
        for body in bodies
    ]
    generator = _Generator(requests)
    total = int(rate * seconds)
    generator.expected = total
    loop = asyncio.get_running_loop()
    pool = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: _Connection(generator), host, port)
        pool.append(protocol)
    generator.idle.extend(pool)

    interval = 1.0 / rate
    # perf_counter, not loop.time(): uvloop's clock is cached at millisecond resolution.
    start = time.perf_counter() + 0.05
    scheduled = 0
    while scheduled < total:
        now = time.perf_counter()
        due = min(total, int((now - start) / interval) + 1) if now >= start else 0
        while scheduled < due:
            generator.dispatch(start + scheduled * interval)
            scheduled += 1
        await asyncio.sleep(TICK_SECONDS)
    # Let the last answers arrive (bounded): whatever is still missing counts as failed.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(generator.finished.wait(), timeout=10)
    unanswered = total - len(generator.latencies) - generator.failed
    for connection in pool:
        if connection.transport is not None:
            connection.transport.close()
    latencies = sorted(generator.latencies)
    return OpenLoopResult(
        rate=rate,
        seconds=seconds,
        scheduled=total,
        completed=len(latencies),
        failed=generator.failed + unanswered,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] if latencies else float("nan")) * 1000,
        max_backlog=generator.max_backlog,
        statuses=dict(generator.statuses),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON array of request bodies (strings)")
    args = parser.parse_args()
    bodies = [b.encode() for b in json.loads(args.bodies.read_text(encoding="utf-8"))]
    result = run(run_open_loop(args.url, bodies, args.rate, args.seconds, args.connections))
    print(json.dumps(result.__dict__, indent=2))


def run(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop when installed (it is with uvicorn[standard]): the generator's own cost matters."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
