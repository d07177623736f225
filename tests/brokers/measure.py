"""Figures behind the exactly-once advice: broker start times and what a transaction costs with aiokafka.

    PYTHONPATH=tests .venv/bin/python -m brokers.measure [--records 20000]

Starts its own Apache Kafka (full JIT, as a benchmark should), then prints: start, clean and crash
restart times; the latency of `commit_transaction()` by transaction size; and produce throughput
without transactions against one transaction per N records (200-byte values, 8 partitions,
acks=all, linger 5 ms, no compression).
Not a test: nothing is asserted. Run it on an idle machine and quote medians.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from .apache_kafka import ApacheKafka
from .clients import create_topic, unique


def _median_ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered) * 1000:6.1f} ms, p90 {p90 * 1000:6.1f} ms"


def measure_starts(kafka: ApacheKafka, rounds: int) -> None:
    kafka.start()
    print(f"first start (format + JVM + answering): {kafka.last_start_seconds:.2f} s")
    for kill in (False, True):
        seconds = []
        for _ in range(rounds):
            kafka.restart(kill=kill)
            seconds.append(kafka.last_start_seconds)
        print(f"restart after {'SIGKILL' if kill else 'SIGTERM'}: "
              f"{', '.join(f'{s:.2f}' for s in seconds)} s (median {statistics.median(seconds):.2f})")


async def _produce(bootstrap: str, topic: str, records: int, per_transaction: int | None) -> tuple[float, list[float]]:
    """Seconds to produce `records`, and the latency of each `commit_transaction()`."""
    value = b"x" * 200
    options: dict[str, object] = {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5,
                                  "max_batch_size": 512 * 1024}
    if per_transaction is not None:
        options["transactional_id"] = unique("measure")
    producer = AIOKafkaProducer(**options)
    await producer.start()
    commits: list[float] = []
    try:
        started = time.monotonic()
        sent = 0
        while sent < records:
            count = min(per_transaction or records, records - sent)
            if per_transaction is not None:
                await producer.begin_transaction()
            for i in range(count):
                await producer.send(topic, value, key=str(sent + i).encode())
            if per_transaction is not None:
                commit_started = time.monotonic()
                await producer.commit_transaction()
                commits.append(time.monotonic() - commit_started)
            else:
                await producer.flush()
            sent += count
        return time.monotonic() - started, commits
    finally:
        await producer.stop()


async def measure_transactions(kafka: ApacheKafka, records: int) -> None:
    for per_transaction in (None, 100, 1000, 5000):
        topic = unique("measure")
        await create_topic(kafka.bootstrap, topic, partitions=8)
        await _produce(kafka.bootstrap, topic, min(records, 2000), per_transaction)  # warm the JIT and the client
        seconds, commits = await _produce(kafka.bootstrap, topic, records, per_transaction)
        label = "no transactions" if per_transaction is None else f"1 transaction / {per_transaction} records"
        line = f"{label:34s} {records / seconds:9.0f} records/s"
        if commits:
            line += f"; commit_transaction(): {_median_ms(commits)} over {len(commits)} commits"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # aiokafka's retry warnings (new topics' leaders) are noise here
    with tempfile.TemporaryDirectory(prefix="redline-kafka-measure-") as directory:
        kafka = ApacheKafka(Path(directory), jvm_options=())
        try:
            measure_starts(kafka, args.restarts)
            asyncio.run(measure_transactions(kafka, args.records))
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
