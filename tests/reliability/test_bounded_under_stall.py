"""A stalled broker makes the stream stop taking work, not grow: the in-flight window stays within
`REDLINE_MAX_IN_FLIGHT_BATCHES` and the process's memory stays flat, then every event gets its verdict.

The broker (its own, memory storage) is frozen with SIGSTOP while a backlog of events waits in the
input topic: produces hang, the window fills, and the consumer must pause rather than keep reading
and classifying. One Kafka-compatible broker serves input and output alike, so "output stalled"
here means the whole broker; a stall of the output topic alone would need two clusters.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx

from service.embedded_broker import EmbeddedBroker, free_port
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir
from tests.kafka_helpers import STREAM_ASSIGNED, StartService, Topics, produce
from tests.reliability.accounting import VerdictLedger, read_all

MAX_IN_FLIGHT = 2
STALL_SECONDS = 8.0
RSS_GROWTH_LIMIT_BYTES = 64 * 1024 * 1024  # the whole backlog decoded would be several times this
_IN_FLIGHT = re.compile(r"^redline_stream_in_flight_batches (\S+)$", re.MULTILINE)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_stalled_broker_pauses_the_stream_within_its_window_and_memory(
    topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=91, malformed_ratio=0.0, id_prefix="stall").records(100_000)
    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        port = free_port()
        service = service_factory(topics.env(
            broker.bootstrap, port, REDLINE_MAX_IN_FLIGHT_BATCHES=str(MAX_IN_FLIGHT),
            REDLINE_BATCH_MAX_RECORDS="500", REDLINE_PRODUCER_REQUEST_TIMEOUT_MS="3000",
            REDLINE_RETRY_BACKOFF_MAX_SECONDS="1", REDLINE_RULES=str(bundled_rules_dir()),
        ))
        service.wait_for_log(STREAM_ASSIGNED)
        assert service.process is not None
        pid = service.process.pid
        # The default pack classifies slower than the test produces: a backlog builds up behind it.
        await produce(broker.bootstrap, topics.input, records)

        in_flight: list[float] = []
        rss: list[int] = []
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            rss_at_stall = rss_bytes(pid)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                deadline = asyncio.get_running_loop().time() + STALL_SECONDS
                while asyncio.get_running_loop().time() < deadline:
                    found = _IN_FLIGHT.search((await client.get("/metrics")).text)
                    assert found is not None
                    in_flight.append(float(found[1]))
                    rss.append(rss_bytes(pid))
                    await asyncio.sleep(0.25)  # sampling a gauge: there is nothing to await
                ready_during_stall = (await client.get("/readyz")).status_code
        finally:
            os.kill(broker.pid, signal.SIGCONT)

        ledger = VerdictLedger({r.event_id for r in records if r.event_id is not None})
        await read_all(broker.bootstrap, topics.output, ledger.add, timeout_seconds=90)
        growth = max(rss) - rss_at_stall
        print(f"\nstall: {len(records)} events, {STALL_SECONDS}s SIGSTOP, in-flight max {max(in_flight):.0f}"
              f" (limit {MAX_IN_FLIGHT}), RSS at stall {rss_at_stall / 2**20:.1f} MiB, max growth "
              f"{growth / 2**20:.1f} MiB over {len(rss)} samples, readyz during stall {ready_during_stall}, "
              f"missing {len(ledger.missing)}, duplicates {ledger.duplicates}")
        assert max(in_flight) == MAX_IN_FLIGHT  # the window filled (work was pending) and went no further
        assert growth <= RSS_GROWTH_LIMIT_BYTES
        assert ledger.missing == set(), service.log_tail(60)
        service.signal(signal.SIGTERM)
        assert service.wait(timeout_seconds=30) == 0
