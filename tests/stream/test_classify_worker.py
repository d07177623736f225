"""The classify worker process (no Kafka): same outputs as in-process classification, answers in
order with several batches in flight, fails its batches when killed, swaps on a pack change."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka_helpers import rules_dir
from prometheus_client import REGISTRY

from service.events import decode_verdict
from service.rules.loader import load_pack
from service.sample_traffic import SampleTraffic
from service.settings import Settings
from service.stream.classify_worker import WireRecord
from service.stream.pipeline import process_records
from service.stream.worker_client import ClassifyWorkers, worker_enabled
from service.stream.worker_process import WorkerError, WorkerProcess

MAX_RECORD_BYTES = 4096


def records(count: int, seed: int, first_offset: int = 0) -> list[WireRecord]:
    # 5% malformed: dead letters must cross the process boundary as well as verdicts.
    sample = SampleTraffic(seed=seed, malformed_ratio=0.05).records(count)
    return [WireRecord("events", offset % 3, first_offset + offset, 1_700_000_000_000 + offset, r.key, r.value,
                       [("trace", b"t")]) for offset, r in enumerate(sample)]


def settings(rules: Path | None = None) -> Settings:
    return Settings(rules=rules or rules_dir(), max_record_bytes=MAX_RECORD_BYTES, log_level="WARNING")


def bump_version(pack: Path, version: str) -> None:
    manifest = pack / "pack.yaml"
    text = manifest.read_text()
    current = next(line for line in text.splitlines() if line.startswith("version:"))
    manifest.write_text(text.replace(current, f'version: "{version}"'))


async def wait_until(condition: object, timeout_seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)  # polling a subprocess's progress: no event to await across it


async def test_worker_outputs_equal_in_process_outputs_in_submission_order() -> None:
    engine = load_pack(rules_dir())
    worker = await WorkerProcess.start(settings())
    try:
        assert worker.ruleset == engine.ruleset
        batches = [records(300, seed=40 + n, first_offset=300 * n) for n in range(6)]
        futures = [worker.submit(batch) for batch in batches]  # all in flight at once
        assert worker.in_flight == len(batches)
        results = [await future for future in futures]
    finally:
        await worker.stop()
    assert worker.process.returncode == 0  # EOF on stdin: it answered everything and exited cleanly
    for batch, result in zip(batches, results, strict=True):
        expected = process_records(engine, batch, datetime.now(UTC), max_record_bytes=MAX_RECORD_BYTES,
                                   dead_letter_max_value_bytes=8 * 1024 * 1024)
        assert result.ruleset == engine.ruleset
        got = [decode_verdict(r.value) for r in result.processed.verdict_records]
        want = [decode_verdict(r.value) for r in expected.verdict_records]
        # decided_at is the clock of each side; everything else is equal, in order.
        assert [(v.event_id, v.action, v.severity, v.matches, v.ruleset) for v in got] == [
            (v.event_id, v.action, v.severity, v.matches, v.ruleset) for v in want
        ]
        assert [(r.key, r.sent_at) for r in result.processed.verdict_records] == [
            (r.key, r.sent_at) for r in expected.verdict_records
        ]
        assert result.processed.dead_letters == expected.dead_letters
        assert expected.dead_letters, "the sample has malformed records"
        assert result.processed.tally == expected.tally
        assert result.classify_seconds > 0


async def test_killed_worker_fails_every_batch_in_flight() -> None:
    worker = await WorkerProcess.start(settings())
    futures = [worker.submit(records(2000, seed=50 + n)) for n in range(4)]
    os.kill(worker.pid, signal.SIGKILL)
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    await worker.stop()
    # Those answered before the kill are whole; every other one failed: none is lost silently.
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert failed, "the kill came after every answer"
    assert all(isinstance(o, WorkerError) for o in failed)
    assert not worker.alive
    with pytest.raises(WorkerError):
        worker.submit(records(1, seed=1))


async def test_a_hung_worker_is_killed_and_its_batches_fail() -> None:
    worker = await WorkerProcess.start(settings(), answer_timeout_seconds=1.0)
    os.kill(worker.pid, signal.SIGSTOP)  # alive but answering nothing
    future = worker.submit(records(100, seed=55))
    with pytest.raises(WorkerError):
        await asyncio.wait_for(future, 30)
    await worker.stop()
    assert worker.process.returncode == -signal.SIGKILL


async def test_refused_pack_does_not_start_a_worker(tmp_path: Path) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    (pack / "pack.yaml").write_text("name: broken\n")
    with pytest.raises(WorkerError, match="refused"):
        await WorkerProcess.start(settings(pack))


async def test_a_new_pack_starts_a_new_worker_and_the_old_one_exits(tmp_path: Path) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    first_digest = load_pack(pack).ruleset.digest
    workers = ClassifyWorkers(settings(pack), first_digest)
    workers.open()
    try:
        await wait_until(lambda: workers.current() is not None)
        old = workers.current()
        assert old is not None and old.ruleset.digest == first_digest
        pending = old.submit(records(2000, seed=60))  # in flight on the old worker during the swap

        bump_version(pack, "2.0")
        second_digest = load_pack(pack).ruleset.digest
        workers.sync(second_digest)  # the runtime swapped: the old pack's worker takes no more batches
        assert workers.current() is None, "until the new worker is ready the stream classifies in-process"
        assert not old.alive
        await wait_until(lambda: workers.current() is not None)
        new = workers.current()
        assert new is not None and new.ruleset.digest == second_digest and new.pid != old.pid

        result = await pending  # the old worker answered what it had before it exited
        assert {decode_verdict(r.value).ruleset.digest for r in result.processed.verdict_records} == {first_digest}
        await asyncio.wait_for(old.process.wait(), 15)
        assert old.process.returncode == 0
    finally:
        await workers.close()


async def test_a_worker_with_another_pack_than_the_serving_one_is_not_used(tmp_path: Path) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    workers = ClassifyWorkers(settings(pack), load_pack(pack).ruleset.digest)
    workers.open()
    try:
        await wait_until(lambda: workers.current() is not None)
        starts = workers.starts
        # The runtime serves a pack the directory no longer holds (it changed after the load):
        # rather than classify with another pack, the stream classifies in-process (current() None).
        workers.sync("sha256:" + "0" * 64)
        assert workers.current() is None and workers.starting
        await wait_until(lambda: not workers.starting)  # started, loaded the directory's pack, refused
        assert workers.starts == starts + 1
        assert workers.current() is None
    finally:
        await workers.close()


def worker_failures(stage: str) -> float:
    value = REGISTRY.get_sample_value("redline_stream_classify_worker_failures_total", {"stage": stage})
    assert value is not None
    return value


def worker_up() -> float | None:
    return REGISTRY.get_sample_value("redline_stream_classify_worker_up")


async def test_a_dead_worker_is_replaced() -> None:
    deaths = worker_failures("serving")
    workers = ClassifyWorkers(settings(), load_pack(rules_dir()).ruleset.digest)
    workers.open()
    try:
        await wait_until(lambda: workers.current() is not None)
        assert worker_up() == 1
        first = workers.current()
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        await wait_until(lambda: worker_failures("serving") == deaths + 1)
        await wait_until(lambda: workers.current() is not None and workers.current() is not first)
        assert workers.starts == 2
        assert worker_up() == 1
    finally:
        await workers.close()
    assert worker_up() == 0


async def test_a_refused_pack_counts_a_start_failure_and_classifies_in_process(tmp_path: Path) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    serving_digest = load_pack(pack).ruleset.digest
    (pack / "pack.yaml").write_text("name: broken\n")  # changed on disk after the runtime's load
    refusals = worker_failures("start")
    workers = ClassifyWorkers(settings(pack), serving_digest)
    workers.open()
    try:
        await wait_until(lambda: not workers.starting)
        assert worker_failures("start") == refusals + 1
        assert workers.current() is None and worker_up() == 0
    finally:
        await workers.close()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("on", True),  # forced on, whatever the CPUs
        ("off", False),  # forced off
    ],
)
def test_worker_setting(mode: str, expected: bool) -> None:
    assert worker_enabled(Settings(stream_classify_worker=mode)) is expected  # type: ignore[arg-type]


def test_worker_auto_follows_the_cpus_this_process_may_use() -> None:
    from service.stream.worker_client import effective_cpu_count

    cpus = effective_cpu_count()
    assert 0 < cpus <= (os.cpu_count() or 1)
    assert worker_enabled(Settings(stream_classify_worker="auto")) is (cpus >= 2)
