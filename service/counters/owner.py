"""The counter owner: the counter topic's consumer-group loop (service.kafka.batch_loop) with this
handler. It counts each key it owns and passes each request on — to the next key's owner, or, at
the last key, as a verdict to the output topic.

Exactly one replica owns a key: the counter topic is keyed by state key and read by the consumer
group `<group_id>.counters`, so Kafka assigns each partition (and every key hashed to it) to one
member. A key's state is written to the compacted changelog topic, partition for partition, with
every batch; a member that is assigned a partition first reads that changelog partition to its
end, so counts survive restarts and move with rebalances (docs/counters.md).

Delivery: a batch's offsets are committed only after its verdicts, forwarded requests and changelog
records were acknowledged (at_least_once), or in one transaction with them (exactly_once: the
changelog, the forwards and the verdicts of a counter partition commit together with its offsets,
and the changelog and the counter topic are read read_committed). A crash or a failed produce
re-delivers the uncommitted batches; counting is idempotent (a member is a set element), so a
re-delivered request never counts twice, and a partition sought back after a failure restores its
state from the changelog first, so its requests are counted again from the committed state, in order.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from service import metrics
from service.counter_requests import CounterRequest, decode_request, encode_request
from service.counters.window import WindowStore, decode_state, encode_state
from service.decisions import Evaluator, decide, ruleset_headers, verdict_key
from service.errors import ConfigError, EventDecodeError
from service.events import ChatEvent, Verdict, decode_event, encode_verdict
from service.kafka.batch_loop import BatchLoop
from service.kafka.connection import Clients, retry_delay
from service.kafka.dead_letters import DeadLetter, dead_lettering
from service.kafka.options import client_options
from service.kafka.publisher import Outbox
from service.kafka.records import Batch, Item, SourceRecord
from service.kafka.topics import ensure_topics
from service.runtime import Runtime
from service.settings import Settings
from service.verdict_counts import count_verdicts

log = logging.getLogger(__name__)

NOT_READY: Final = "counter owner not connected to the broker or not in its consumer group"
_EXPIRE_PER_BATCH: Final = 10_000  # keys expired per batch at most: bounds the work of one batch


class CounterOwner:
    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._dead_lettering = dead_lettering(settings.dead_letter_max_value_bytes)
        self._stores: dict[int, WindowStore] = {}
        self.loop = BatchLoop(
            settings, self, name="counter owner", topic=settings.counter_requests_topic,
            group_id=f"{settings.group_id}.counters", readiness=runtime.readiness.part("counters", NOT_READY),
        )

    def request_stop(self) -> None:
        self.loop.request_stop()

    async def run(self) -> None:
        try:
            await self.loop.run()
        finally:
            self._stores.clear()
            self._report_keys()

    # --- BatchHandler

    async def prepare(self, clients: Clients) -> None:
        """A key's state is restored from the changelog partition numbered like its requests'."""
        settings = self.settings
        if settings.create_topics:
            # Before the metadata request below: a broker with auto.create.topics.enable (Apache
            # Kafka's default) would create a missing topic with its own default partition count.
            await ensure_topics(settings)
        requests = await clients.producer.partitions_for(settings.counter_requests_topic)
        states = await clients.producer.partitions_for(settings.counter_state_topic)
        if len(requests) != len(states):
            raise ConfigError(
                f"counter topics are not co-partitioned: {settings.counter_requests_topic} has "
                f"{len(requests)} partitions, {settings.counter_state_topic} has {len(states)}"
            )

    def accepts(self, tp: TopicPartition) -> bool:
        # Fetched before the assignment's restore ran: never count blind; it is fetched again.
        return tp.partition in self._stores

    def handle(self, batch: Batch) -> Outbox:
        engine = self.runtime.engine  # one engine for the whole batch: reloads swap the reference
        outbox = Outbox()
        forwards: list[Item] = []
        last_hops: list[tuple[ChatEvent, SourceRecord, dict[str, int], float]] = []
        for tp, records in batch.items():
            store = self._stores[tp.partition]  # the loop kept only partitions this accepts
            changes: dict[str, bytes | None] = {}
            for record in records:
                try:
                    request = decode_request(record.value or b"")
                    if not request.hops:
                        raise msgspec.ValidationError("a counter request with no key left to count")
                except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                    outbox.dead_letters.append(self._dead_lettering(record, "invalid_counter_request", str(exc)))
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
                    forwards.append((rest[0].state_key.encode(), encode_request(forward), []))
                    continue
                try:
                    event = decode_event(request.event)
                except EventDecodeError as exc:  # the first pass decoded it: only a foreign record fails here
                    outbox.dead_letters.append(
                        self._dead_lettering(record, "classify_error", f"{type(exc).__name__}: {exc}"))
                    continue
                last_hops.append((event, record, counts, request.sent_at))
            for key in store.expire(_EXPIRE_PER_BATCH):
                changes[key] = None
                metrics.counter_keys_expired_total.inc()
            if changes:
                outbox.placed.append((self.settings.counter_state_topic, tp.partition,
                                      [(key.encode(), value, []) for key, value in changes.items()]))
        verdicts, sent_at, failed = self._verdicts(engine, last_hops)
        outbox.dead_letters += failed
        outbox.keyed = [(self.settings.output_topic, verdicts), (self.settings.counter_requests_topic, forwards)]
        metrics.record_dead_letters(outbox.dead_letters)
        outbox.delivered = lambda: self._delivered(sent_at)
        return outbox

    def _verdicts(
        self, engine: Evaluator, last_hops: list[tuple[ChatEvent, SourceRecord, dict[str, int], float]]
    ) -> tuple[list[Item], list[float], list[DeadLetter]]:
        """The last hops' verdict records, decided with their counts in the order counted, with
        their events' sent_at; and the dead letters of the events the engine failed on."""
        outcomes, failed = decide(engine, [hop[0] for hop in last_hops], [hop[1] for hop in last_hops],
                                  datetime.now(UTC), self._dead_lettering, [hop[2] for hop in last_hops])
        headers = ruleset_headers(engine.ruleset)
        items: list[Item] = []
        sent_at: list[float] = []
        decided: list[Verdict] = []
        for (event, _, _, sent), outcome in zip(last_hops, outcomes, strict=True):
            if outcome is None:
                continue
            items.append((verdict_key(event), encode_verdict(outcome.verdict), headers))
            sent_at.append(sent)
            decided.append(outcome.verdict)
        metrics.record_counts(count_verdicts(decided), "stream")  # once per batch: one increment per label set
        return items, sent_at, failed

    def _delivered(self, sent_at: list[float]) -> None:
        metrics.observe_end_to_end_lags(sent_at, time.time())
        self._report_keys()

    def _report_keys(self) -> None:
        metrics.counter_keys.set(sum(len(store) for store in self._stores.values()))

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:  # their batches were committed: the next owner restores from the changelog
            self._stores.pop(tp.partition, None)
        self._report_keys()
        log.info("counter partitions revoked", extra={"partitions": sorted(tp.partition for tp in partitions)})

    async def rewound(self, partitions: set[TopicPartition]) -> None:
        """Sought back after a failure: the stores may hold sightings of batches that were not
        committed; the committed state is the changelog's, and the requests come again."""
        numbers = sorted(tp.partition for tp in partitions if tp.partition in self._stores)
        if not numbers:
            return
        max_keys = self._stores[numbers[0]].max_keys
        for number in numbers:
            del self._stores[number]
        started = time.monotonic()
        restored = await self._restore(numbers, max_keys)
        self._stores.update(restored)
        self._report_keys()
        log.info("counter partitions restored after a rewind",
                 extra={"partitions": numbers, "restored_keys": sum(len(store) for store in restored.values()),
                        "seconds": round(time.monotonic() - started, 3)})

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        per_partition = max(1, self.settings.counter_max_keys // max(1, len(numbers)))
        for store in self._stores.values():
            store.max_keys = per_partition
        missing = [p for p in numbers if p not in self._stores]
        if missing:
            started = time.monotonic()
            restored = await self._restore(missing, per_partition)
            self._stores.update(restored)
            keys = sum(len(store) for store in restored.values())
            metrics.counter_restored_keys_total.inc(keys)
            metrics.counter_restore_duration_seconds.observe(time.monotonic() - started)
            log.info("counter partitions assigned", extra={"partitions": numbers, "restored_keys": keys,
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
                if self.loop.stopping:
                    raise
                delay = retry_delay(self.settings, attempt)
                log.warning("counter restore failed, retrying", extra={"error": repr(exc), "retry_in_seconds": delay})
                await self.loop.sleep_unless_stopping(delay)


async def restore_changelog(settings: Settings, partitions: list[int], max_keys: int) -> dict[int, WindowStore]:
    """The state of `partitions` from the changelog: the newest record per key wins, None deletes.

    The end is the one the latest fetch reported (tansu's ListOffsets answers the base offset of the
    last batch, not the end, so `end_offsets` cannot be trusted): the high watermark, or with
    exactly_once the last stable offset, since the changelog is read read_committed (a state written
    by a transaction that aborted never existed). The partitions' producers were started before this
    runs, which aborted any transaction a previous owner left open: the last stable offset is the end.
    A partition is restored when the consumer's position reached that end.
    """
    stores = {p: WindowStore(max_keys=max_keys) for p in partitions}
    read_committed = settings.exactly_once
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
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
                end = consumer.last_stable_offset(tp) if read_committed else consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    for store in stores.values():
        evicted = store.trim()
        if evicted:
            metrics.counter_keys_evicted_total.inc(len(evicted))
    return stores
