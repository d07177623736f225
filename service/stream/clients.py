"""What the stream and the counter owner share about their Kafka clients: backoff and closing."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.settings import Settings

log = logging.getLogger(__name__)


def retry_delay(settings: Settings, attempt: int) -> float:
    """Exponential backoff from 0.5 s, capped by `retry_backoff_max_seconds`."""
    return float(min(settings.retry_backoff_max_seconds, 0.5 * 2 ** min(attempt, 10)))


async def stop_quietly(*clients: AIOKafkaConsumer | AIOKafkaProducer | None) -> None:
    """Stop the clients (a consumer leaves its group: its partitions move on at once).

    A close is not allowed to fail the service: every commit it could make was made, or the records
    are delivered again, which at-least-once allows. aiokafka re-raises here what ended its
    coordinator task, e.g. an assertion when the stop lands inside a rebalance.
    """
    for client in clients:
        if client is None:
            continue
        try:
            await client.stop()
        except (KafkaError, OSError) as exc:
            log.warning("kafka client close failed", extra={"client": type(client).__name__, "error": repr(exc)})
