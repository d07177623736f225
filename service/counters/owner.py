"""The counter owner: consumes the internal counter topic, counts each key it owns, and passes
each request on — to the next key's owner, or, at the last key, as a verdict to the output topic.

Exactly one replica owns a key: the counter topic is keyed by state key and read by the consumer
group `<group_id>.counters`, so Kafka assigns each partition (and every key hashed to it) to one
member. A key's state is written to the compacted changelog topic, partition for partition, after
every batch; a member that is assigned a partition first reads that changelog partition to its end,
so counts survive restarts and move with rebalances (docs/counters.md).

Delivery: a batch's offsets are committed only after its verdicts, forwarded requests and changelog
records were acknowledged. A crash re-delivers the uncommitted batch; counting is idempotent (a
member is a set element), so a re-delivered request never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from service import metrics
from service.counters.requests import CounterRequest, decode_request, encode_request
from service.counters.routing import send_keyed
from service.counters.window import WindowStore, decode_state, encode_state
from service.errors import ConfigError
from service.events import Verdict, decode_event, encode_verdict
from service.runtime import Runtime
from service.settings import Settings
from service.stream.clients import retry_delay, stop_quietly
from service.stream.dead_letters import DeadLetter, DeadLetterReason, dead_letter
from service.stream.kafka_config import client_options, consumer_options, producer_options
from service.stream.pipeline import ruleset_headers, verdict_key
from service.stream.publisher import BatchPublisher, Item

log = logging.getLogger(__name__)

_EXPIRE_PER_BATCH = 10_000  # keys expired per batch at most: bounds the work of one batch


@dataclass
class _Outputs:
    """What one batch produces; sent together, committed after all were acknowledged."""

    verdicts: list[tuple[bytes, bytes]] = field(default_factory=list)  # (chat key, verdict)
    forwards: list[tuple[bytes, bytes]] = field(default_factory=list)  # (next state key, request)
    changelog: dict[int, dict[str, bytes | None]] = field(default_factory=dict)  # partition → key → state
    dead_letters: list[DeadLetter] = field(default_factory=list)
    verdict_lags: list[float] = field(default_factory=list)
    ruleset_headers: list[tuple[str, bytes]] = field(default_factory=list)  # of the engine that decided


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, owner: CounterOwner) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._owner.on_assigned(assigned)


class CounterOwner:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._stores: dict[int, WindowStore] = {}
        self._lock = asyncio.Lock()  # a batch and a rebalance never interleave

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Until request_stop(): connect (retrying), count, commit; then leave the group."""
        try:
            while not self.stopping:
                if self._consumer is None and not await self._connect():
                    return
                try:
                    await self._loop()
                except KafkaError as exc:  # the broker went away mid-batch: reconnect and redo it
                    log.warning("counter owner failed; reconnecting", extra={"error": repr(exc)})
                    await self._close()
                    await self._sleep_unless_stopping(1.0)
        finally:
            await self._close()

    # --- connection

    async def _connect(self) -> bool:
        settings = self.settings
        attempt = 0
        while not self.stopping:
            try:
                producer = AIOKafkaProducer(**producer_options(settings))
                await producer.start()
                self._producer, self._publisher = producer, BatchPublisher(producer)
                await self._check_co_partitioned(producer)
                options = {**consumer_options(settings), "group_id": f"{settings.group_id}.counters"}
                consumer = AIOKafkaConsumer(**options)
                await consumer.start()
                self._consumer = consumer
                consumer.subscribe([settings.counter_requests_topic], listener=_Listener(self))
                log.info("counter owner connected", extra={"topic": settings.counter_requests_topic,
                                                           "changelog": settings.counter_state_topic})
                return True
            except (KafkaError, OSError) as exc:
                await self._close()
                attempt += 1
                delay = retry_delay(settings, attempt)
                log.warning("counter owner: broker not reachable, retrying",
                            extra={"error": repr(exc), "retry_in_seconds": delay})
                await self._sleep_unless_stopping(delay)
        return False

    async def _check_co_partitioned(self, producer: AIOKafkaProducer) -> None:
        """A key's state is restored from the changelog partition numbered like its requests'."""
        settings = self.settings
        requests = await producer.partitions_for(settings.counter_requests_topic)
        states = await producer.partitions_for(settings.counter_state_topic)
        if len(requests) != len(states):
            raise ConfigError(
                f"counter topics are not co-partitioned: {settings.counter_requests_topic} has "
                f"{len(requests)} partitions, {settings.counter_state_topic} has {len(states)}"
            )

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._publisher = None
        await stop_quietly(consumer, producer)
        self._stores.clear()
        self._report_keys()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- the loop

    async def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.stopping:
            batch = await consumer.getmany(timeout_ms=self.settings.poll_timeout_ms,
                                           max_records=self.settings.batch_max_records)
            if not batch:
                continue
            async with self._lock:
                assigned = consumer.assignment()
                batch = {tp: records for tp, records in batch.items() if tp in assigned}
                for tp in [tp for tp in batch if tp.partition not in self._stores]:
                    # Fetched before the assignment's restore ran: never count blind; fetch it again.
                    consumer.seek(tp, batch.pop(tp)[0].offset)
                if not batch:
                    continue
                outputs = self._count(batch)
                # Not acknowledged (KafkaError): run() reconnects, and the batch is consumed again
                # from the last commit; counting it again is idempotent.
                await self._send_and_wait(outputs)
                await self._commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
                self._observe(outputs)

    def _count(self, batch: dict[TopicPartition, list[Any]]) -> _Outputs:
        engine = self.runtime.engine  # one engine for the whole batch: reloads swap the reference
        out = _Outputs(ruleset_headers=ruleset_headers(engine.ruleset))
        decided: list[Verdict] = []
        now = datetime.now(UTC)
        for tp, records in batch.items():
            store = self._stores[tp.partition]  # _loop dropped partitions not restored yet
            changes = out.changelog.setdefault(tp.partition, {})
            for record in records:
                try:
                    request = decode_request(record.value or b"")
                    if not request.hops:
                        raise msgspec.ValidationError("a counter request with no key left to count")
                except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                    out.dead_letters.append(self._dead_letter(record, "invalid_counter_request", str(exc)))
                    continue
                hop, rest = request.hops[0], request.hops[1:]
                applied = store.apply(hop.state_key, hop.sighting())
                metrics.counter_sightings_total.inc()
                state = store.get(hop.state_key)
                changes[hop.state_key] = encode_state(state) if state is not None else None
                for key in applied.evicted_keys:
                    changes[key] = None
                    metrics.counter_keys_evicted_total.inc()
                counts = {**request.counts, hop.state_key: applied.count}
                if rest:
                    forward = CounterRequest(request.event, rest, counts, request.source, request.sent_at)
                    out.forwards.append((rest[0].state_key.encode(), encode_request(forward)))
                    continue
                try:
                    event = decode_event(request.event)
                    verdict = engine.classify(event, now, counts=counts)
                except Exception as exc:  # one bad request must not stop the partition
                    out.dead_letters.append(self._dead_letter(record, "classify_error", f"{type(exc).__name__}: {exc}"))
                    continue
                out.verdicts.append((verdict_key(event), encode_verdict(verdict)))
                out.verdict_lags.append(request.sent_at)
                decided.append(verdict)
            for key in store.expire(_EXPIRE_PER_BATCH):
                changes[key] = None
                metrics.counter_keys_expired_total.inc()
        metrics.record_verdicts(decided, "stream")  # once per batch: one increment per label set
        return out

    def _dead_letter(self, record: Any, reason: DeadLetterReason, detail: str) -> DeadLetter:
        return dead_letter(
            key=record.key, value=record.value, headers=record.headers, reason=reason, detail=detail,
            topic=record.topic, partition=record.partition, offset=record.offset,
            timestamp_ms=record.timestamp, max_value_bytes=self.settings.dead_letter_max_value_bytes,
        )

    async def _send_and_wait(self, out: _Outputs) -> None:
        publisher = self._publisher
        assert publisher is not None
        settings = self.settings
        futures: list[asyncio.Future[Any]] = []
        headers = out.ruleset_headers
        futures += await send_keyed(publisher, settings.output_topic, ((k, v, headers) for k, v in out.verdicts))
        futures += await send_keyed(publisher, settings.counter_requests_topic, ((k, v, []) for k, v in out.forwards))
        for partition, changes in out.changelog.items():
            if changes:
                items: list[Item] = [(key.encode(), value, []) for key, value in changes.items()]
                futures += await publisher.send(settings.counter_state_topic, partition, items)
        if out.dead_letters:
            dlq = settings.dlq_topic
            partitions = await publisher.partitions(dlq)
            for letter in out.dead_letters:
                partition = partitions[letter.source_partition % len(partitions)]
                futures += await publisher.send(dlq, partition, [(letter.key, letter.value, letter.headers)])
                metrics.events_dead_lettered_total.labels(letter.reason).inc()
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result if isinstance(result, KafkaError) else KafkaError(repr(result))

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved on: its new owner restores the changelog we wrote and re-counts
            # the uncommitted requests, which changes nothing (idempotent).
            log.warning("counter commit refused after a rebalance", extra={"error": repr(exc)})

    def _observe(self, out: _Outputs) -> None:
        metrics.observe_end_to_end_lags(out.verdict_lags, time.time())
        self._report_keys()

    def _report_keys(self) -> None:
        metrics.counter_keys.set(sum(len(store) for store in self._stores.values()))

    # --- rebalance (called by aiokafka's coordinator task)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch in progress finishes (and commits) first
            for tp in revoked:
                self._stores.pop(tp.partition, None)
        self._report_keys()
        log.info("counter partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        per_partition = max(1, self.settings.counter_max_keys // max(1, len(partitions)))
        for store in self._stores.values():
            store.max_keys = per_partition
        missing = [p for p in partitions if p not in self._stores]
        if missing:
            started = time.monotonic()
            async with self._lock:  # a batch fetched meanwhile waits for the restored state
                restored = await self._restore(missing, per_partition)
                self._stores.update(restored)
            keys = sum(len(store) for store in restored.values())
            metrics.counter_restored_keys_total.inc(keys)
            metrics.counter_restore_duration_seconds.observe(time.monotonic() - started)
            log.info("counter partitions assigned", extra={"partitions": partitions, "restored_keys": keys,
                                                           "seconds": round(time.monotonic() - started, 3)})
        self._report_keys()

    async def _restore(self, partitions: list[int], max_keys: int) -> dict[int, WindowStore]:
        """Read the changelog partitions to their end. Retries until it succeeds or we stop."""
        attempt = 0
        while True:
            try:
                return await restore_changelog(self.settings, partitions, max_keys)
            except KafkaError as exc:
                attempt += 1
                if self.stopping:
                    raise
                delay = retry_delay(self.settings, attempt)
                log.warning("counter restore failed, retrying", extra={"error": repr(exc), "retry_in_seconds": delay})
                await self._sleep_unless_stopping(delay)


async def restore_changelog(settings: Settings, partitions: list[int], max_keys: int) -> dict[int, WindowStore]:
    """The state of `partitions` from the changelog: the newest record per key wins, None deletes.

    The end is the fetch high watermark (tansu's ListOffsets answers the base offset of the last
    batch, not the end, so `end_offsets` cannot be trusted): a partition is restored when the
    consumer's position reached the high watermark its latest fetch reported.
    """
    stores = {p: WindowStore(max_keys=max_keys) for p in partitions}
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.counter_state_topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(tps)
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for tp, records in batch.items():
                store = stores[tp.partition]
                for record in records:
                    if record.key is None:
                        continue
                    try:
                        state = decode_state(record.value) if record.value is not None else None
                    except msgspec.DecodeError:
                        log.warning("counter changelog: unreadable state skipped",
                                    extra={"partition": tp.partition, "offset": record.offset})
                        continue
                    store.restore(record.key.decode(), state)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    for store in stores.values():
        evicted = store.trim()
        if evicted:
            metrics.counter_keys_evicted_total.inc(len(evicted))
    return stores
