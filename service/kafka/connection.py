"""Connecting a consumer-group member's clients, with retry, and closing them.

`connect` starts a producer and a consumer of `group_id` and hands them to `prepare` (create
topics, check partitioning); a broker that cannot be reached is retried with backoff until it
answers or the loop is asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from service.kafka.options import consumer_options, producer_options
from service.kafka.preflight import connection_refusal
from service.kafka.publisher import BatchPublisher
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clients:
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    publisher: BatchPublisher


async def connect(
    settings: Settings,
    group_id: str,
    stop: asyncio.Event,
    *,
    name: str,
    prepare: Callable[[Clients], Awaitable[None]],
) -> Clients | None:
    """Started clients, or None when asked to stop first. `name` says who in the log lines."""
    attempt = 0
    while not stop.is_set():
        producer: AIOKafkaProducer | None = None
        consumer: AIOKafkaConsumer | None = None
        try:
            producer = AIOKafkaProducer(**producer_options(settings))
            await producer.start()
            consumer = AIOKafkaConsumer(**consumer_options(settings, group_id))
            await consumer.start()
            clients = Clients(consumer, producer, BatchPublisher(producer))
            await prepare(clients)
            return clients
        except (KafkaError, OSError) as exc:
            await stop_quietly(consumer, producer)
            attempt += 1
            delay = retry_delay(settings, attempt)
            # aiokafka says "Unable to bootstrap" whatever happened: ask the broker why, once.
            reason = await connection_refusal(settings) if isinstance(exc, KafkaConnectionError) else None
            log.warning("broker refused the connection, retrying" if reason else "broker not reachable, retrying",
                        extra={"loop": name, "error": reason or repr(exc), "retry_in_seconds": delay,
                               "attempt": attempt})
            await sleep_unless(stop, delay)
        except BaseException:
            await stop_quietly(consumer, producer)
            raise
    return None


def retry_delay(settings: Settings, attempt: int) -> float:
    """Exponential backoff from 0.5 s, capped by `retry_backoff_max_seconds`."""
    return float(min(settings.retry_backoff_max_seconds, 0.5 * 2 ** min(attempt, 10)))


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


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
