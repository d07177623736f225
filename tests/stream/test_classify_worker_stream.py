"""`redline serve` with the classify worker against the real broker: the worker killed mid-stream,
a reload that swaps workers, and the worker switched off."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections import defaultdict
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from kafka_helpers import (
    STREAM_ASSIGNED,
    ServiceProcess,
    StartService,
    Topics,
    children_of,
    produce,
    produce_paced,
    read_all,
    read_topic,
    read_verdicts,
    rules_dir,
)

from service.embedded_broker import free_port
from service.events import decode_verdict
from service.sample_traffic import SampleRecord, SampleTraffic
from service.settings import bundled_rules_dir
from service.stream.dead_letters import OFFSET_HEADER, PARTITION_HEADER, header_value

SMALL_BATCHES = {"REDLINE_BATCH_MAX_RECORDS": "200"}


async def produce_fast(bootstrap: str, topic: str, records: list[SampleRecord]) -> None:
    """With the batch API, partitioned by key like any client: a backlog in well under a second."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=512 * 1024)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[SampleRecord]] = defaultdict(list)
        for record in records:
            by_partition[DefaultPartitioner()(record.key, partitions, partitions)].append(record)
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for record in items:
                if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=record.key, value=record.value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def logged(service: ServiceProcess, text: str) -> str:
    """A line already read (in any order with the others awaited before it), else the next one."""
    return next((line for line in service.log if text in line), None) or service.wait_for_log(text)


async def wait_gone(pid: int, timeout_seconds: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while os.path.exists(f"/proc/{pid}"):  # noqa: ASYNC240  # procfs answers from memory
        assert time.monotonic() < deadline, f"process {pid} still exists"
        await asyncio.sleep(0.1)  # another process's exit: nothing to await from here


async def read_outputs(
    bootstrap: str, topics: Topics, event_ids: set[str], poison: int
) -> tuple[dict[str, list[object]], set[tuple[int, int]]]:
    """Every verdict (by event id) and every dead letter's source (partition, offset), read until all came."""
    verdicts = await read_verdicts(bootstrap, topics.output, event_ids)
    sources: set[tuple[int, int]] = set()

    def add_letter(record: object) -> bool:
        headers = record.headers  # type: ignore[attr-defined]
        sources.add((int(header_value(headers, PARTITION_HEADER) or b"-1"),
                     int(header_value(headers, OFFSET_HEADER) or b"-1")))
        return len(sources) >= poison

    await read_all(bootstrap, topics.dlq, add_letter, timeout_seconds=30)
    return verdicts, sources


async def test_worker_killed_mid_stream_leaves_no_event_without_a_verdict(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=71, malformed_ratio=0.02, id_prefix="wkill").records(40_000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    poison = len(records) - len(event_ids)
    # The default pack and full batches: classifying is the bottleneck, so the worker always has
    # batches in flight when it is killed (with the tiny test pack it is idle most of the time).
    service = service_factory(topics.env(kafka_bootstrap, free_port(), REDLINE_STREAM_CLASSIFY_WORKER="on",
                                         REDLINE_RULES=str(bundled_rules_dir())))
    first = json.loads(logged(service, "classify worker ready"))
    logged(service, STREAM_ASSIGNED)
    await produce_fast(kafka_bootstrap, topics.input, records)  # a backlog: the worker is kept busy
    await read_topic(kafka_bootstrap, topics.output, 4000)  # the stream is flowing
    # Frozen first, so that batches are surely in flight when it dies (a busy machine can leave a
    # running worker idle between batches): with a backlog the stream hands it its next batch
    # within milliseconds, and that batch cannot finish.
    os.kill(first["pid"], signal.SIGSTOP)
    await asyncio.sleep(2.0)
    os.kill(first["pid"], signal.SIGKILL)

    # The batches it had fail, the stream rewinds to its last commit; a new worker takes over.
    service.wait_for_log("classify worker failed; re-processing from the last commit")
    service.wait_for_log("classify worker died")
    second = json.loads(service.wait_for_log("classify worker ready"))
    assert second["pid"] != first["pid"]
    assert second["digest"] == first["digest"]

    verdicts, letters = await read_outputs(kafka_bootstrap, topics, event_ids, poison)
    assert event_ids - verdicts.keys() == set()
    assert len(letters) == poison  # every poison record has its dead letter, the rewound ones too
    duplicates = sum(len(found) - 1 for found in verdicts.values())
    print(f"\nclassify worker kill -9: {len(event_ids)} events, {poison} poison, {duplicates} duplicate verdicts")
    assert service.process is not None and service.process.poll() is None, "serve itself lived through it"
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()


async def test_reload_swaps_the_worker_and_no_batch_mixes_packs(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService, tmp_path: Path
) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    manifest = pack / "pack.yaml"
    records = SampleTraffic(seed=72, malformed_ratio=0.0, id_prefix="wswap").records(20_000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    service = service_factory(topics.env(kafka_bootstrap, free_port(), REDLINE_RULES=str(pack),
                                         REDLINE_STREAM_CLASSIFY_WORKER="on", **SMALL_BATCHES))
    first = json.loads(logged(service, "classify worker ready"))
    logged(service, STREAM_ASSIGNED)

    producing = asyncio.create_task(produce_paced(kafka_bootstrap, topics.input, records, chunk=300,
                                                  pause_seconds=0.05))
    await read_topic(kafka_bootstrap, topics.output, 1500)  # a stretch decided by the first pack
    manifest.write_text(manifest.read_text().replace('version: "1.0"', 'version: "2.0"'))
    service.signal(signal.SIGHUP)
    reloaded = json.loads(service.wait_for_log("rule pack reloaded"))
    second = json.loads(service.wait_for_log("classify worker ready"))
    assert second["digest"] == reloaded["digest"] != first["digest"]
    assert second["pid"] != first["pid"]
    await wait_gone(first["pid"])  # the old worker answered what it had, then exited
    await producing

    verdicts, _ = await read_outputs(kafka_bootstrap, topics, event_ids, poison=0)
    assert event_ids - verdicts.keys() == set()
    order = {first["digest"]: 0, second["digest"]: 1}
    # One classification of one batch reads the clock once: its verdicts share `decided_at`.
    packs_per_batch: dict[str, set[str]] = defaultdict(set)
    ranks_per_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for found in verdicts.values():
        for record in found:
            verdict = decode_verdict(record.value)  # type: ignore[attr-defined]
            header = dict(record.headers)["redline-ruleset-digest"].decode()  # type: ignore[attr-defined]
            assert header == verdict.ruleset.digest
            packs_per_batch[verdict.decided_at.isoformat()].add(verdict.ruleset.digest)
            ranks_per_partition[record.partition].append((record.offset, order[verdict.ruleset.digest]))  # type: ignore[attr-defined]
    assert all(len(packs) == 1 for packs in packs_per_batch.values()), "a batch was decided by two packs"
    assert {d for packs in packs_per_batch.values() for d in packs} == set(order), "both packs decided"
    for partition_ranks in ranks_per_partition.values():
        ranks = [rank for _, rank in sorted(partition_ranks)]
        assert ranks == sorted(ranks), "a partition went back to the older pack"
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()


async def test_worker_off_classifies_in_the_serve_process(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=73, malformed_ratio=0.05, id_prefix="woff").records(3000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    service = service_factory(topics.env(kafka_bootstrap, free_port(), REDLINE_STREAM_CLASSIFY_WORKER="off"))
    assert json.loads(logged(service, "stream classification"))["worker"] is False
    logged(service, STREAM_ASSIGNED)
    await produce(kafka_bootstrap, topics.input, records)
    verdicts, letters = await read_outputs(kafka_bootstrap, topics, event_ids, len(records) - len(event_ids))
    assert event_ids - verdicts.keys() == set()
    assert len(letters) == len(records) - len(event_ids)
    assert service.process is not None
    assert children_of(service.process.pid) == []  # no worker process
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()
    assert "classify worker" not in service.log_tail(200)
