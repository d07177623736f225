"""The at-least-once commit window's rules, on a stand-in consumer (pure ordering logic; the
broker side is exercised by the stream and reliability suites): offsets committed in consumption
order, each batch only once all its records were acknowledged; after a failure nothing more is
committed until `recover()` seeks back to the last commit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaTimeoutError

from service.kafka.commit_window import AtLeastOnceWindow
from service.kafka.publisher import Outbox, PublishFailed

A = TopicPartition("in", 0)
B = TopicPartition("in", 1)


@dataclass
class Record:
    offset: int


@dataclass
class Consumer:
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    refuse: bool = False

    def assignment(self) -> set[TopicPartition]:
        return {A, B}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            raise CommitFailedError("the group rebalanced")
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class Events:
    log: list[str] = field(default_factory=list)

    def committed(self, ok: bool) -> None:
        self.log.append(f"committed {ok}")

    def produce_failed(self) -> None:
        self.log.append("produce failed")

    def broker_reachable(self, ok: bool) -> None:
        pass

    def failure_changed(self) -> None:
        pass

    def in_flight(self, batches: int) -> None:
        pass


@dataclass
class Publisher:
    """Publishes nothing: each publish answers the acks (or the failure) the test queued for it."""

    answers: list[Any] = field(default_factory=list)

    async def publish(self, outbox: Outbox, dead_letter_topic: str) -> list[Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


def window(consumer: Consumer, events: Events, publisher: Publisher | None = None) -> AtLeastOnceWindow:
    made = AtLeastOnceWindow(consumer, publisher or Publisher(), asyncio.Event(), events,  # type: ignore[arg-type]
                             dead_letter_topic="dlq", max_batches=3, retry_backoff_max_seconds=0.1)
    made.start()
    return made


def batch(tp: TopicPartition, first: int, last: int) -> dict[TopicPartition, list[Any]]:
    return {tp: [Record(offset) for offset in range(first, last + 1)]}


async def submit(target: AtLeastOnceWindow, records: dict[TopicPartition, list[Any]], acks: list[Any]) -> None:
    target._publisher.answers.append(acks)  # type: ignore[attr-defined]
    await target.submit(records, Outbox())


async def settle_briefly() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batches_commit_in_consumption_order_once_acknowledged() -> None:
    consumer, events = Consumer(), Events()
    target = window(consumer, events)
    loop = asyncio.get_running_loop()
    first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
    await submit(target, batch(A, 0, 9), [first])
    await submit(target, batch(B, 0, 4), [second])
    assert target.full is False
    await submit(target, batch(A, 10, 19), [third])
    assert target.full  # max_batches in flight: the loop now waits for room
    second.set_result(None)
    third.set_result(None)
    await settle_briefly()
    assert consumer.commits == []  # the oldest batch is not acknowledged yet
    first.set_result(None)
    assert await target.settle(5.0)
    assert consumer.commits == [{A: 10}, {B: 5}, {A: 20}]
    assert await target.close(1.0)


async def test_after_a_failed_ack_nothing_is_committed_until_recovered_from_the_last_commit() -> None:
    consumer, events = Consumer(), Events()
    target = window(consumer, events)
    loop = asyncio.get_running_loop()
    ok, failing, later = loop.create_future(), loop.create_future(), loop.create_future()
    await submit(target, batch(A, 0, 9), [ok])
    await submit(target, batch(A, 10, 19), [failing])
    await submit(target, batch(A, 20, 29), [later])
    ok.set_result(None)
    failing.set_exception(KafkaTimeoutError())
    later.set_result(None)
    assert await target.settle(5.0)
    assert consumer.commits == [{A: 10}]  # the batch after the failure is not committed either
    assert target.failure is not None
    assert "produce failed" in events.log
    assert await target.recover() == {A}
    assert consumer.seeks == [(A, 10)]  # back to the last commit: 10..29 are processed again
    assert target.failure is None
    await target.close(1.0)


async def test_a_publish_that_fails_midway_keeps_what_was_queued_and_fails_the_window() -> None:
    consumer, events = Consumer(), Events()
    target = window(consumer, events)
    queued = asyncio.get_running_loop().create_future()
    target._publisher.answers.append(PublishFailed(KafkaTimeoutError(), [queued]))  # type: ignore[attr-defined]
    await target.submit(batch(B, 5, 7), Outbox())
    assert target.failure is not None and target.in_flight == 1  # its queued ack still settles first
    queued.set_result(None)
    assert await target.recover() == {B}
    assert consumer.commits == []
    assert consumer.seeks == [(B, 5)]
    await target.close(1.0)


async def test_a_refused_commit_is_counted_and_the_window_goes_on() -> None:
    consumer, events = Consumer(refuse=True), Events()
    target = window(consumer, events)
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    await submit(target, batch(A, 0, 1), [done])
    assert await target.settle(5.0)
    assert events.log == ["committed False"]
    assert target.failure is None  # the partition's new owner re-processes from its last commit
    await target.close(1.0)


async def test_close_gives_up_on_a_batch_that_does_not_settle_in_time() -> None:
    consumer, events = Consumer(), Events()
    target = window(consumer, events)
    await submit(target, batch(A, 0, 1), [asyncio.get_running_loop().create_future()])  # never acknowledged
    assert await target.close(0.05) is False
    assert consumer.commits == []
