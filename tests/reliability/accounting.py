"""Accounting helpers of the reliability tests: tag every input record, read every output back, and
say what is missing and what came twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer

from service.events import decode_verdict
from service.sample_traffic import SampleRecord
from tests.kafka_helpers import read_all as read_all  # one reader for both suites

SEQ_HEADER = "reliability-seq"  # the test's own tag, kept first on a dead letter
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # stands in for decided_at when comparing duplicates


async def produce_tagged(bootstrap: str, topic: str, records: list[SampleRecord], first_seq: int,
                         halfway: asyncio.Event | None = None) -> None:
    """Produce with a unique sequence header on each record (poison records carry no usable id);
    `halfway` is set once half of them are acknowledged, so a fault can strike mid-production."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=r.value, key=r.key, headers=[(SEQ_HEADER, str(first_seq + i).encode())])
            for i, r in enumerate(records)
        ]
        for index, future in enumerate(futures):
            await future
            if halfway is not None and index == len(futures) // 2:
                halfway.set()
    finally:
        await producer.stop()


@dataclass
class VerdictLedger:
    """Verdicts per event id; a duplicate must equal the first one apart from `decided_at`."""

    expected: set[str]
    counts: Counter[str] = field(default_factory=Counter)
    first: dict[str, bytes] = field(default_factory=dict)
    conflicting: set[str] = field(default_factory=set)

    def add(self, record: object) -> bool:
        verdict = decode_verdict(record.value)  # type: ignore[attr-defined]
        body = msgspec.json.encode(msgspec.structs.replace(verdict, decided_at=_EPOCH))
        self.counts[verdict.event_id] += 1
        if self.first.setdefault(verdict.event_id, body) != body:
            self.conflicting.add(verdict.event_id)
        return self.expected <= self.counts.keys()

    @property
    def missing(self) -> set[str]:
        return self.expected - self.counts.keys()

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values())

    @property
    def unexpected(self) -> set[str]:
        return set(self.counts) - self.expected


@dataclass
class DeadLetterLedger:
    """Dead letters by the input sequence they came from, with the reason header of each."""

    expected: set[int]
    reasons: dict[int, str] = field(default_factory=dict)
    counts: Counter[int] = field(default_factory=Counter)

    def add(self, record: object) -> bool:
        headers = dict(record.headers)  # type: ignore[attr-defined]
        seq = int(headers[SEQ_HEADER])
        self.counts[seq] += 1
        self.reasons[seq] = headers.get("redline-dlq-reason", b"").decode()
        return self.expected <= self.counts.keys()

    @property
    def missing(self) -> set[int]:
        return self.expected - self.counts.keys()

    @property
    def without_reason(self) -> set[int]:
        return {seq for seq, reason in self.reasons.items() if not reason}

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values())
