"""The stream: the input topic's consumer-group loop (service.kafka.batch_loop) with this handler.

Each batch is decoded, decided and encoded by the pure pipeline (pipeline.py) with the engine the
runtime serves at that moment (reloads swap it between batches: one pack decides a batch); its
verdicts go to the output topic, its counter requests to the counter topic, its dead letters to
the DLQ; the commit window commits its offsets once all of them were acknowledged
(at-least-once, in order per partition: docs/stream.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from itertools import chain
from typing import Final

from aiokafka import TopicPartition

from service import metrics
from service.admission import EventLimits
from service.batches import SLICE_CHARS, give_back
from service.engine.classifier import Engine
from service.kafka.batch_loop import BatchLoop, LoopObserver
from service.kafka.connection import Clients
from service.kafka.dead_letters import dead_lettering
from service.kafka.publisher import Outbox
from service.kafka.records import Batch
from service.kafka.topics import ensure_topics
from service.runtime import Runtime
from service.settings import Settings
from service.stream.pipeline import Decoded, Processed, classify_decoded, decode_records

log = logging.getLogger(__name__)

NOT_READY: Final = "stream not connected to the broker or not in the consumer group"


class StreamProcessor:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._dead_lettering = dead_lettering(settings.dead_letter_max_value_bytes)
        self._limits = EventLimits.from_settings(settings)
        self.loop = BatchLoop(
            settings, self, name="stream", topic=settings.input_topic, group_id=settings.group_id,
            readiness=runtime.readiness.part("stream", NOT_READY), observer=_StreamMetrics(),
        )

    def request_stop(self) -> None:
        self.loop.request_stop()

    async def run(self) -> None:
        await self.loop.run()

    # --- BatchHandler

    async def prepare(self, clients: Clients) -> None:
        if self.settings.create_topics:
            await ensure_topics(self.settings)

    def accepts(self, tp: TopicPartition) -> bool:
        return True

    def handle(self, batch: Batch) -> Outbox | Awaitable[Outbox]:
        settings = self.settings
        records = list(chain.from_iterable(batch.values()))
        metrics.events_consumed_total.inc(len(records))
        decoded = decode_records(records, max_record_bytes=settings.max_record_bytes,
                                 dead_lettering=self._dead_lettering, limits=self._limits)
        if decoded.unknown_fields:
            metrics.events_unknown_fields_total.inc(decoded.unknown_fields)
        slices = decoded.slices(SLICE_CHARS)
        if len(slices) == 1:  # the usual batch: decided in one go
            return self._outbox([self._classify(slices[0], self.runtime.engine, datetime.now(UTC))])
        return self._handle_sliced(slices)

    async def _handle_sliced(self, slices: list[Decoded]) -> Outbox:
        """A batch of many or long texts, decided slice by slice with the loop given back between
        slices: heartbeats, probes, acks and the other loops go on meanwhile, so no batch holds the
        process for longer than one slice (one event's cost is bounded: docs/reliability.md). One
        engine and one clock reading decide every slice, as they decide an unsliced batch."""
        engine, now = self.runtime.engine, datetime.now(UTC)
        processed = []
        for piece in slices:
            started = time.perf_counter()
            processed.append(self._classify(piece, engine, now))
            await give_back(time.perf_counter() - started)
        return self._outbox(processed)

    def _classify(self, decoded: Decoded, engine: Engine, now: datetime) -> Processed:
        started = time.perf_counter()
        processed = classify_decoded(engine, decoded, now, dead_lettering=self._dead_lettering)
        seconds = time.perf_counter() - started
        tally = processed.tally
        if tally.total:
            metrics.classify_duration_seconds.labels("stream").observe(seconds / tally.total)
            metrics.record_counts(tally, "stream")
        metrics.record_dead_letters(processed.dead_letters)
        return processed

    def _outbox(self, processed: list[Processed]) -> Outbox:
        settings = self.settings
        verdicts = [item for p in processed for item in p.verdicts] if len(processed) > 1 else processed[0].verdicts
        return Outbox(
            keyed=[(settings.output_topic, verdicts),
                   (settings.counter_requests_topic, [item for p in processed for item in p.counter_requests])],
            dead_letters=[letter for p in processed for letter in p.dead_letters],
            delivered=functools.partial(_observe_lags, [at for p in processed for at in p.sent_at]),
        )

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in partitions)})

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in partitions)})

    async def rewound(self, partitions: set[TopicPartition]) -> None:
        pass  # the stream keeps no state between batches


def _observe_lags(sent_at: list[float]) -> None:
    metrics.observe_end_to_end_lags(sent_at, time.time())


class _StreamMetrics(LoopObserver):
    def in_flight(self, batches: int) -> None:
        metrics.stream_in_flight_batches.set(batches)

    def committed(self, ok: bool) -> None:
        metrics.stream_commits_total.labels("success" if ok else "failure").inc()

    def produce_failed(self) -> None:
        metrics.stream_produce_failures_total.inc()

    def assigned(self, partitions: set[TopicPartition]) -> None:
        metrics.stream_assigned_partitions.set(len(partitions))

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            with contextlib.suppress(KeyError):  # never fetched from: no series
                metrics.stream_consumer_lag_records.remove(str(tp.partition))

    def lag(self, tp: TopicPartition, records: int) -> None:
        metrics.stream_consumer_lag_records.labels(str(tp.partition)).set(records)
