"""`redline dev`: an embedded broker, the service, sample traffic and a live summary of verdicts.

Everything runs on loopback: tansu (memory storage) on a free port, `redline serve` in-process
(HTTP on settings.http_port, stream on), a generator of sample group-chat traffic at `rate`
events/s, and a reader of the verdict and dead-letter topics that prints one summary line per
second to stdout. Ctrl-C (or `duration`) stops it all and the broker with it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.embedded_broker import BrokerError, EmbeddedBroker
from service.errors import PackError
from service.events import decode_verdict
from service.kafka.options import client_options
from service.kafka.topics import ensure_topics
from service.logs import configure_logging
from service.runtime import Runtime, run_loop
from service.sample_traffic import SampleTraffic
from service.serve import ListenError, listen, serve
from service.settings import Settings

log = logging.getLogger(__name__)
_TICK_SECONDS = 0.1
# The sample traffic's share of malformed records: the dead-letter path is shown working.
MALFORMED_RATIO = 0.03


def run(settings: Settings, *, rate: float, duration: float | None) -> int:
    # The summary owns stdout; logs (JSON, stderr) only from warnings up unless asked for more.
    level = settings.log_level if settings.log_level.upper() == "DEBUG" else "WARNING"
    configure_logging(level)
    settings = settings.model_copy(update={"http_host": "127.0.0.1"})
    try:
        listener = listen(settings)  # a taken port ends here, before anything was started
    except ListenError as exc:
        print(f"redline dev: {exc}", file=sys.stderr)
        return 2
    broker = EmbeddedBroker()
    try:
        broker.start()
    except BrokerError as exc:
        listener.close()
        print(f"redline dev: {exc}", file=sys.stderr)
        return 2
    try:
        settings = settings.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "create_topics": True,
            "session_timeout_ms": 3000, "topic_partitions": min(settings.topic_partitions, 4),
            "kafka_security_protocol": "PLAINTEXT",
            "delivery": "at_least_once",  # tansu has no transactions (docs/stream.md)
            "log_level": level,  # the stream processes configure their logging from the settings
        })
        try:
            runtime = Runtime.load(settings, isolated=True)
        except PackError as exc:
            listener.close()
            print(exc, file=sys.stderr)
            return 2
        print(f"redline dev: broker {broker.bootstrap}, HTTP http://127.0.0.1:{settings.http_port}, "
              f"pack {runtime.engine.ruleset.name} {runtime.engine.ruleset.version}, "
              f"{rate:g} events/s; Ctrl-C to stop", flush=True)
        print(f"redline dev: the generator sends ~{MALFORMED_RATIO:.0%} malformed records on purpose: "
              "they are the dead letters counted below", flush=True)
        return run_loop(_dev(settings, runtime, rate, duration, listener))
    finally:
        broker.stop()


async def _dev(
    settings: Settings, runtime: Runtime, rate: float, duration: float | None, listener: socket.socket
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await ensure_topics(settings)
    summary = _Summary()
    helpers = [
        asyncio.create_task(_generate(settings, rate, stop), name="redline-dev-traffic"),
        asyncio.create_task(_read_results(settings, summary), name="redline-dev-reader"),
        asyncio.create_task(_print_summary(summary), name="redline-dev-summary"),
    ]
    if duration is not None:
        loop.call_later(duration, stop.set)
    try:
        code = await serve(settings, runtime, stop, listener)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    summary.print_line(final=True)
    return code


async def _generate(settings: Settings, rate: float, stop: asyncio.Event) -> None:
    traffic = SampleTraffic(seed=int(time.time()), malformed_ratio=MALFORMED_RATIO)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=10)
    await producer.start()
    try:
        owed = 0.0
        started = time.monotonic()
        sent = 0
        while not stop.is_set():
            owed = rate * (time.monotonic() - started) - sent
            for record in traffic.records(int(owed)):
                await producer.send(settings.input_topic, value=record.value, key=record.key)
                sent += 1
            await asyncio.sleep(_TICK_SECONDS)  # pacing: the clock is the event
    finally:
        await producer.stop()


@dataclass
class _Summary:
    started: float = field(default_factory=time.monotonic)
    actions: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    _last_verdicts: int = 0

    @property
    def verdicts(self) -> int:
        return sum(self.actions.values())

    def print_line(self, final: bool = False) -> None:
        total = self.verdicts
        per_second = total - self._last_verdicts
        self._last_verdicts = total
        top = ", ".join(f"{name} {n}" for name, n in self.categories.most_common(4)) or "-"
        elapsed = time.monotonic() - self.started
        head = (f"[total {elapsed:.0f}s] verdicts {total}" if final
                else f"[{elapsed:5.0f}s] verdicts {total} (+{per_second}/s)")
        print(f"{head}: allow {self.actions['allow']} "
              f"review {self.actions['review']} block {self.actions['block']} | dead letters "
              f"{self.dead_letters} | top categories: {top}", flush=True)


async def _read_results(settings: Settings, summary: _Summary) -> None:
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        topics = (settings.output_topic, settings.dlq_topic)
        await consumer.topics()
        consumer.assign([TopicPartition(topic, p) for topic in topics
                         for p in sorted(consumer.partitions_for_topic(topic) or ())])
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                if tp.topic == settings.dlq_topic:
                    summary.dead_letters += len(records)
                    continue
                for record in records:
                    verdict = decode_verdict(record.value)
                    summary.actions[verdict.action] += 1
                    summary.categories.update({m.category for m in verdict.matches if not m.shadow})
    finally:
        await consumer.stop()


async def _print_summary(summary: _Summary) -> None:
    while True:
        await asyncio.sleep(1.0)
        summary.print_line()
