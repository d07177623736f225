"""Dead letters: a consumed record that cannot be processed goes to the DLQ topic unchanged.

This is the loops' error policy: a record that fails (it does not decode, or the engine fails on
it) becomes a dead letter through the `DeadLettering` callback the loop is given, and the rest of
its partition goes on.

The original key, value and headers are kept; Redline appends headers naming why and where from:

    redline-dlq-reason            invalid_json | invalid_event | too_large | classify_error |
                                  invalid_counter_request (a record of the internal counter topic)
    redline-dlq-detail            the decoder's message (names the JSON path), at most 1 KiB
    redline-source-topic          input topic
    redline-source-partition      decimal
    redline-source-offset         decimal
    redline-source-timestamp-ms   the input record's timestamp, decimal
    redline-dlq-value-omitted     only when the value was larger than dead_letter_max_value_bytes:
                                  the original size in bytes (the value is then empty)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from service.kafka.records import SourceRecord

DeadLetterReason = Literal[
    "invalid_json", "invalid_event", "too_large", "classify_error", "invalid_counter_request"
]

REASON_HEADER: Final = "redline-dlq-reason"
DETAIL_HEADER: Final = "redline-dlq-detail"
TOPIC_HEADER: Final = "redline-source-topic"
PARTITION_HEADER: Final = "redline-source-partition"
OFFSET_HEADER: Final = "redline-source-offset"
TIMESTAMP_HEADER: Final = "redline-source-timestamp-ms"
OMITTED_HEADER: Final = "redline-dlq-value-omitted"
_DETAIL_MAX_BYTES: Final = 1024

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: DeadLetterReason
    source_partition: int


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    reason: DeadLetterReason,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    max_value_bytes: int,
) -> DeadLetter:
    out = list(headers)
    out += [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail.encode("utf-8", "replace")[:_DETAIL_MAX_BYTES]),
        (TOPIC_HEADER, topic.encode()),
        (PARTITION_HEADER, str(partition).encode()),
        (OFFSET_HEADER, str(offset).encode()),
        (TIMESTAMP_HEADER, str(timestamp_ms).encode()),
    ]
    if value is not None and len(value) > max_value_bytes:
        # Larger than the DLQ accepts: keep the evidence of where it was, not the payload.
        out.append((OMITTED_HEADER, str(len(value)).encode()))
        value = b""
    return DeadLetter(key=key, value=value, headers=out, reason=reason, source_partition=partition)


# The error policy: (the record that failed, why, the decoder's or the error's message) → its dead letter.
DeadLettering = Callable[[SourceRecord, DeadLetterReason, str], DeadLetter]


def dead_lettering(max_value_bytes: int) -> DeadLettering:
    """The policy of every Redline loop: keep the record, say why and where it came from."""

    def to_dead_letter(record: SourceRecord, reason: DeadLetterReason, detail: str) -> DeadLetter:
        return dead_letter(
            key=record.key, value=record.value, headers=record.headers, reason=reason, detail=detail,
            topic=record.topic, partition=record.partition, offset=record.offset,
            timestamp_ms=record.timestamp, max_value_bytes=max_value_bytes,
        )

    return to_dead_letter


def header_value(headers: Headers, name: str) -> bytes | None:
    """The last value of a header (consumers of the DLQ and the tests read them this way)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found
