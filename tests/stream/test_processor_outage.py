"""Broker outage: readiness goes false, nothing is lost, the stream recovers by itself.

The outage is the broker process frozen with SIGSTOP (requests hang, as behind a dead network)
and thawed with SIGCONT; its own broker, so the session broker of the other tests is untouched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

from service.embedded_broker import EmbeddedBroker
from service.runtime import Runtime
from service.sample_traffic import SampleTraffic
from service.stream.processor import StreamProcessor
from tests.kafka_helpers import Topics, produce, read_topic, read_verdict_ids, ready


async def until(condition: Callable[[], bool], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)  # readiness is a flag without a notification to await


async def test_broker_outage_makes_the_stream_unready_then_it_recovers(topics: Topics) -> None:
    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        settings = topics.settings(
            broker.bootstrap, producer_request_timeout_ms=2000, broker_probe_interval_seconds=0.5,
            retry_backoff_max_seconds=1.0, batch_max_records=200,
        )
        runtime = Runtime.load(settings)
        processor = StreamProcessor(settings, runtime)
        task = asyncio.create_task(processor.run())
        try:
            before = SampleTraffic(seed=31, malformed_ratio=0.0).records(1000)
            await produce(broker.bootstrap, topics.input, before)
            await read_topic(broker.bootstrap, topics.output, len(before))
            assert ready(runtime)

            os.kill(broker.pid, signal.SIGSTOP)
            try:
                await until(lambda: not ready(runtime), 15)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            await until(lambda: ready(runtime), 30)

            after = SampleTraffic(seed=32, malformed_ratio=0.0).records(1000)
            await produce(broker.bootstrap, topics.input, after)
            expected = {r.event_id for r in before + after if r.event_id}
            seen = await read_verdict_ids(broker.bootstrap, topics.output, expected, timeout_seconds=60)
            assert expected - set(seen) == set()
        finally:
            processor.request_stop()
            await task
