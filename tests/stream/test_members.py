"""`redline serve` with stream member processes against the real broker: the group shares the
partitions among them, `/metrics` and `/readyz` speak for all of them, a killed member is started
again with nothing lost (on tansu, and on Apache Kafka with exactly_once: nothing twice either), a
killed `serve` leaves no member behind and nothing lost, a reload reaches every member, SIGTERM
drains them all."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.embedded_broker import free_port
from service.events import decode_verdict
from service.sample_traffic import SampleTraffic
from service.settings import Settings
from service.stream import members
from tests.kafka_helpers import (
    OPEN_TRANSACTIONS,
    STREAM_ASSIGNED,
    ServiceProcess,
    StartService,
    StreamBroker,
    Topics,
    aborted_records,
    children_of,
    freeze_in_open_transaction,
    produce,
    produce_paced,
    read_to_end,
    read_topic,
    read_verdicts,
    rules_dir,
)

MEMBERS = {"REDLINE_STREAM_PROCESSES": "2"}


def member_of(record: dict) -> int | None:
    """The member a log line is about: a member's own lines carry `stream_member`, the parent's `member`."""
    found = record.get("stream_member", record.get("member"))
    return found if isinstance(found, int) else None


def member_lines(service: ServiceProcess, text: str, count: int, timeout_seconds: float = 60.0) -> list[dict]:
    """Log lines containing `text`, the latest one of each of `count` distinct members."""
    found: dict[int, dict] = {}

    def note(record: dict) -> None:
        if (member := member_of(record)) is not None:
            found[member] = record

    for line in service.log:
        if text in line:
            note(json.loads(line))
    deadline = time.monotonic() + timeout_seconds
    while len(found) < count:
        note(json.loads(service.wait_for_log(text, timeout_seconds=max(0.1, deadline - time.monotonic()))))
    return list(found.values())


def resident_bytes(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


def member_shares(service: ServiceProcess) -> dict[int, list[int]]:
    """Each of the two members' partitions once the group settled (the first joiner is reassigned)."""
    shares = {r["stream_member"]: r["partitions"] for r in member_lines(service, STREAM_ASSIGNED, 2)}
    while sorted(p for share in shares.values() for p in share) != [0, 1, 2, 3]:
        line = json.loads(service.wait_for_log(STREAM_ASSIGNED))
        shares[line["stream_member"]] = line["partitions"]
    return shares


async def eventually(check: Callable[[], bool], what: str, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(("cpus", "partitions", "expected"), [(1.0, 6, 1), (1.5, 6, 1), (2.0, 6, 2), (16.0, 6, 6)])
def test_auto_member_count_follows_cpus_up_to_the_partitions(
    monkeypatch: pytest.MonkeyPatch, cpus: float, partitions: int, expected: int
) -> None:
    monkeypatch.setattr(members, "effective_cpu_count", lambda: cpus)
    assert members.member_count(Settings(stream_processes="auto", topic_partitions=partitions)) == expected
    assert members.member_count(Settings(stream_processes=3, topic_partitions=partitions)) == 3


async def test_members_share_the_partitions_and_report_through_one_scrape(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService
) -> None:
    port = free_port()
    service = service_factory(topics.env(kafka_bootstrap, port, **MEMBERS))
    shares = member_shares(service)
    await eventually(lambda: ready(port), "/readyz never said ready")
    assert all(shares.values()), "each member has partitions"

    records = SampleTraffic(seed=91, malformed_ratio=0.05, id_prefix="members").records(4000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    await produce(kafka_bootstrap, topics.input, records)
    verdicts = await read_verdicts(kafka_bootstrap, topics.output, event_ids)
    assert event_ids - verdicts.keys() == set()
    # One scrape counts what both members did, as one process would have.
    await eventually(lambda: metric(port, "redline_events_consumed_total") == len(records),
                     "the members' consumed counts never reached the scrape")
    poison = len(records) - len(event_ids)
    dead = sum(metric(port, "redline_events_dead_lettered_total", reason=r) for r in ("invalid_json", "invalid_event"))
    assert dead == poison
    assert metric(port, "redline_events_classified_total", source="stream") == len(event_ids)
    assert metric(port, "redline_stream_assigned_partitions") == 4
    # Observed once a batch's verdicts are acknowledged: a reader may see them a moment before.
    await eventually(lambda: metric(port, "redline_end_to_end_lag_seconds_count") == len(event_ids),
                     "the end-to-end lag never counted every event")
    # The replica's memory is its processes' together, as a container's would be.
    assert service.process is not None
    tree = [service.process.pid, *children_of(service.process.pid)]
    assert len(tree) == 3
    resident = sum(resident_bytes(pid) for pid in tree)
    assert 0.8 * resident < metric(port, "process_resident_memory_bytes") < 1.2 * resident

    service.signal(signal.SIGTERM)
    drained = member_lines(service, "stream drained", 2)
    assert all(line["complete"] for line in drained)
    assert service.wait() == 0, service.log_tail()


async def test_a_killed_member_is_started_again_and_no_event_is_left_without_a_verdict(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    port = free_port()
    records = SampleTraffic(seed=92, malformed_ratio=0.0, id_prefix="mkill").records(20_000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    tiny = {"REDLINE_BATCH_MAX_RECORDS": "50", "REDLINE_MAX_IN_FLIGHT_BATCHES": "2"}  # slow: killed mid-stream
    service = service_factory(topics.env(broker, port, **MEMBERS, **tiny, **OPEN_TRANSACTIONS))
    started = member_lines(service, "stream member started", 2)
    shares = member_shares(service)
    victim = next(line for line in started if line["member"] == 0)
    producing = asyncio.create_task(produce_paced(broker, topics.input, records, chunk=1000,
                                                  pause_seconds=0.02))
    await read_topic(broker, topics.output, 2000)  # the stream is flowing
    before = metric(port, "redline_events_consumed_total")
    if broker.exactly_once:
        await freeze_in_open_transaction(victim["pid"], broker, topics.output, shares[0])
    os.kill(victim["pid"], signal.SIGKILL)

    ended = json.loads(service.wait_for_log("stream member ended; starting it again"))
    assert ended["member"] == 0 and ended["exit_code"] == -signal.SIGKILL
    # The dead member's counts stay in the scrape: counters never go back. (What it did in its
    # last status period is lost with it, as a killed process's unscraped counts are.)
    consumed = [metric(port, "redline_events_consumed_total")]
    again = json.loads(service.wait_for_log("stream member started"))
    assert again["member"] == 0 and again["pid"] != victim["pid"]
    await producing
    consumed.append(metric(port, "redline_events_consumed_total"))
    verdicts = await read_verdicts(broker, topics.output, event_ids)
    assert event_ids - verdicts.keys() == set()
    duplicates = sum(len(found) - 1 for found in verdicts.values())
    await eventually(lambda: ready(port), "/readyz did not come back after the restart")
    assert metric(port, "redline_stream_member_restarts_total") == 1
    consumed.append(metric(port, "redline_events_consumed_total"))
    assert before <= consumed[0] <= consumed[1] <= consumed[2], consumed
    assert consumed[2] > consumed[0], "the restarted member's counts reach the scrape"
    assert service.process is not None and service.process.poll() is None, "serve lived through it"
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()
    if broker.exactly_once:  # the dead member's open transactions were aborted by its successor's init
        counts = Counter(decode_verdict(r.value).event_id for r in await read_to_end(broker, topics.output))
        duplicates = sum(n - 1 for n in counts.values())
        assert set(counts) == event_ids and duplicates == 0
        assert await aborted_records(broker, topics.output) > 0, "the kill struck no open transaction"
    print(f"\nstream member kill -9 ({broker}): {len(event_ids)} events, {duplicates} duplicate verdicts")


async def test_a_reload_reaches_every_member(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService, tmp_path: Path
) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    manifest = pack / "pack.yaml"
    port = free_port()
    admin = "adm-members-reload"
    env = topics.env(kafka_bootstrap, port, REDLINE_RULES=str(pack), REDLINE_ADMIN_KEYS=admin, **MEMBERS)
    service = service_factory(env)
    first = member_lines(service, "stream member started", 2)
    member_lines(service, STREAM_ASSIGNED, 2)
    await eventually(lambda: ready(port), "/readyz never said ready")

    manifest.write_text(manifest.read_text().replace('version: "1.0"', 'version: "2.0"'))
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"http://127.0.0.1:{port}/rules/reload", headers={"authorization": f"Bearer {admin}"}, timeout=30
        )
    assert answer.status_code == 200, answer.text
    digest = answer.json()["ruleset"]["digest"]
    assert digest != first[0]["digest"]
    reloaded = member_lines(service, "rule pack reloaded", 2)
    assert {line["digest"] for line in reloaded} == {digest}
    # The members adopted the pack their parent compiled (at start and on reload): none compiles.
    assert all(line.get("adopted") for line in reloaded)
    assert all(line.get("adopted") for line in member_lines(service, "rule pack loaded", 2))

    records = SampleTraffic(seed=93, malformed_ratio=0.0, id_prefix="mreload").records(2000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    await produce(kafka_bootstrap, topics.input, records)
    verdicts = await read_verdicts(kafka_bootstrap, topics.output, event_ids)
    packs = Counter(decode_verdict(found[0].value).ruleset.digest for found in verdicts.values())  # type: ignore[attr-defined]
    partitions = {found[0].partition for found in verdicts.values()}  # type: ignore[attr-defined]
    assert packs == {digest: len(event_ids)}
    assert len(partitions) > 1
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()


async def test_kill_9_of_serve_leaves_no_member_behind_and_no_event_without_a_verdict(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService
) -> None:
    records = SampleTraffic(seed=94, malformed_ratio=0.0, id_prefix="pkill").records(20_000)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    tiny = {"REDLINE_BATCH_MAX_RECORDS": "50", "REDLINE_MAX_IN_FLIGHT_BATCHES": "2"}  # slow: killed mid-stream
    env = topics.env(kafka_bootstrap, free_port(), **MEMBERS, **tiny)
    first = service_factory(env)
    member_lines(first, STREAM_ASSIGNED, 2)
    assert first.process is not None
    members_of_first = children_of(first.process.pid)
    producing = asyncio.create_task(produce_paced(kafka_bootstrap, topics.input, records, chunk=1000,
                                                  pause_seconds=0.02))
    await read_topic(kafka_bootstrap, topics.output, 2000)  # the stream is flowing
    first.process.kill()  # SIGKILL: serve says nothing to its members
    assert first.wait() == -signal.SIGKILL
    # The members see their input pipe close: they drain, commit, leave the group and exit.
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in members_of_first):  # noqa: ASYNC240  # procfs
        assert time.monotonic() < deadline, "a stream member outlived serve"
        await asyncio.sleep(0.2)
    second = service_factory({**env, "REDLINE_HTTP_PORT": str(free_port())})
    await producing
    verdicts = await read_verdicts(kafka_bootstrap, topics.output, event_ids)
    assert event_ids - verdicts.keys() == set()
    duplicates = sum(len(found) - 1 for found in verdicts.values())
    print(f"\nserve kill -9 with stream members: {len(event_ids)} events, {duplicates} duplicate verdicts")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.log_tail()
