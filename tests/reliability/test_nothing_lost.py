"""Nothing lost: every event gets a verdict and every poison record a dead letter, through a
kill -9, a rebalance with members joining and leaving, a SIGTERM drain and a broker restart.

Two `redline serve` processes share a 4-partition topic on a tansu broker with S3 storage (moto on
loopback), so the broker can be killed and restarted without losing its log or the group's commits.
Events are produced in steps; the faults strike halfway through a step, while it is being produced
and consumed (the broker restart right after its step). The default pack decides, which is slower
than a test pack and keeps more batches in flight at each fault. Duplicates are expected
(at-least-once) and reported; a missing id fails the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import httpx
import pytest

from service.embedded_broker import free_port
from service.sample_traffic import SampleTraffic
from service.settings import bundled_rules_dir
from tests.kafka_helpers import ServiceProcess, StartService, Topics
from tests.reliability.accounting import DeadLetterLedger, VerdictLedger, produce_tagged, read_all
from tests.reliability.persistent_broker import PersistentBroker

# loadtest/reliability_soak.py raises these for longer runs.
EVENTS = int(os.environ.get("RELIABILITY_EVENTS", "20000"))
STEPS = 20
POISON_RATIO = 0.02
# Small batches and a short drain keep several batches in flight at each fault.
TUNING = {"REDLINE_BATCH_MAX_RECORDS": "100", "REDLINE_PRODUCER_REQUEST_TIMEOUT_MS": "3000",
          "REDLINE_RETRY_BACKOFF_MAX_SECONDS": "1", "REDLINE_BROKER_PROBE_INTERVAL_SECONDS": "0.5",
          # tansu on S3 storage, after a restart, answers (nearly) empty fetches when the fetch
          # wait is shorter than its S3 reads: a plain aiokafka consumer stalls the same way at
          # 50 ms and drains at 500 ms (aiokafka's default). Production Kafka needs no such wait.
          "REDLINE_FETCH_MAX_WAIT_MS": "500"}


@pytest.mark.slow
@pytest.mark.timeout(int(os.environ.get("RELIABILITY_TIMEOUT_SECONDS", "240")))
async def test_every_event_has_a_verdict_and_every_poison_record_a_dead_letter_through_faults(
    persistent_broker: PersistentBroker, topics: Topics, service_factory: StartService
) -> None:
    broker = persistent_broker
    records = SampleTraffic(seed=61, malformed_ratio=POISON_RATIO, id_prefix="acct").records(EVENTS)
    event_ids = {r.event_id for r in records if r.event_id is not None}
    poison = {seq for seq, r in enumerate(records) if r.event_id is None}
    assert len(event_ids) == len(records) - len(poison), "sample ids are unique"

    members: list[ServiceProcess] = []

    def member() -> ServiceProcess:
        env = topics.env(broker.bootstrap, free_port(), REDLINE_RULES=str(bundled_rules_dir()), **TUNING)
        members.append(service_factory(env))
        return members[-1]

    first, second = member(), member()
    first.wait_for_log("partitions assigned")
    second.wait_for_log("partitions assigned")
    replacement: ServiceProcess | None = None
    visitor: ServiceProcess | None = None
    faults: list[str] = []

    step = len(records) // STEPS
    for index in range(STEPS):
        chunk = records[index * step:(index + 1) * step]
        if index == 12:  # the broker restart comes after its step: the test's own producer needs the broker
            await produce_tagged(broker.bootstrap, topics.input, chunk, first_seq=index * step)
            broker.restart()  # SIGKILL of the broker, then a new process on the same port and storage
            faults.append("broker SIGKILL + restart (S3 storage)")
            continue
        # The other faults strike while the step is still being produced (and consumed).
        halfway = asyncio.Event()
        producing = asyncio.create_task(
            produce_tagged(broker.bootstrap, topics.input, chunk, first_seq=index * step, halfway=halfway)
        )
        await halfway.wait()
        if index == 3:
            first.process.kill()  # type: ignore[union-attr]  # no drain, no commit, no LeaveGroup
            assert first.wait() == -signal.SIGKILL
            replacement = member()  # joins while the dead member's session has not expired yet
            faults.append("SIGKILL of member 1; member 3 joins (rebalance)")
        elif index == 7:
            second.signal(signal.SIGTERM)
            assert '"complete": true' in second.wait_for_log("stream drained")
            assert second.wait() == 0, _logs([second])
            faults.append("SIGTERM of member 2: drain, commit, leave (rebalance)")
        elif index == 9:
            visitor = member()
            faults.append("member 4 joins (rebalance)")
        elif index == 15:
            assert visitor is not None
            # It must have joined: a SIGTERM during its start-up (pack compile) would just end it.
            visitor.wait_for_log("partitions assigned")
            visitor.signal(signal.SIGTERM)
            assert visitor.wait(timeout_seconds=30) == 0, _logs([visitor])
            faults.append("SIGTERM of member 4: leaves (rebalance)")
        await producing

    verdicts = VerdictLedger(event_ids)
    await read_all(broker.bootstrap, topics.output, verdicts.add, timeout_seconds=90)
    dead = DeadLetterLedger(poison)
    await read_all(broker.bootstrap, topics.dlq, dead.add, timeout_seconds=30)

    print(f"\nnothing lost: {len(records)} records ({len(event_ids)} events, {len(poison)} poison), "
          f"{len(faults)} faults: {'; '.join(faults)}")
    print(f"verdicts: {sum(verdicts.counts.values())} read, missing {len(verdicts.missing)}, "
          f"duplicates {verdicts.duplicates} on {sum(1 for n in verdicts.counts.values() if n > 1)} ids, "
          f"duplicates differing beyond decided_at {len(verdicts.conflicting)}")
    print(f"dead letters: {sum(dead.counts.values())} read, missing {len(dead.missing)}, duplicates "
          f"{dead.duplicates}, reasons {dict(Counter(dead.reasons.values()))}")
    assert verdicts.missing == set(), f"{len(verdicts.missing)} events without a verdict\n" + _logs(members)
    assert verdicts.unexpected == set()
    assert verdicts.conflicting == set()
    assert dead.missing == set(), f"{len(dead.missing)} poison records not dead-lettered"
    assert dead.without_reason == set()
    assert set(dead.reasons.values()) <= {"invalid_json", "invalid_event"}

    assert replacement is not None
    replacement.wait_for_log("partitions assigned")
    replacement.signal(signal.SIGTERM)
    assert replacement.wait(timeout_seconds=30) == 0, _logs([replacement])


def _logs(members: list[ServiceProcess]) -> str:
    """Each member's log (what the test has not read yet included), to tell a stall from a loss."""
    parts = []
    for number, service in enumerate(members, start=1):
        while not service.lines.empty():
            service.log.append(service.lines.get())
        alive = service.process is not None and service.process.poll() is None
        parts.append(f"--- member {number} (exit {service.process.poll() if service.process else None}):\n"
                     + "".join(service.log[-40:]) + (_stream_metrics(service) if alive else ""))
    return "\n".join(parts)


def _stream_metrics(service: ServiceProcess) -> str:
    try:
        text = httpx.get(f"http://127.0.0.1:{service.env['REDLINE_HTTP_PORT']}/metrics", timeout=5).text
    except httpx.HTTPError as exc:
        return f"(metrics unavailable: {exc})\n"
    wanted = ("redline_stream_", "redline_events_consumed_total", "redline_events_dead_lettered_total")
    return "".join(line + "\n" for line in text.splitlines() if line.startswith(wanted))
