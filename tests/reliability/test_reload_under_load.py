"""Reload atomicity on the stream: SIGHUPs while events flow swap packs between batches, never inside
one. Every verdict names the pack that decided it (body `ruleset.digest` = header
`redline-ruleset-digest`), only the packs that were served appear, and in each output partition the
digests change in reload order and never go back (a batch is decided by one pack, in order)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections import defaultdict
from pathlib import Path

from service.embedded_broker import free_port
from service.events import decode_verdict
from service.sample_traffic import SampleTraffic
from tests.kafka_helpers import STREAM_ASSIGNED, StartService, Topics, produce_paced, rules_dir
from tests.reliability.accounting import read_all

RELOADS = 3


async def test_sighup_under_load_swaps_packs_between_batches(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService, tmp_path: Path
) -> None:
    pack = Path(shutil.copytree(rules_dir(), tmp_path / "pack"))
    manifest = pack / "pack.yaml"
    records = SampleTraffic(seed=101, malformed_ratio=0.0, id_prefix="reload").records(12_000)
    service = service_factory(topics.env(kafka_bootstrap, free_port(), REDLINE_RULES=str(pack),
                                         REDLINE_BATCH_MAX_RECORDS="200"))
    digests = [service.wait_for_log("rule pack loaded")]
    service.wait_for_log(STREAM_ASSIGNED)

    producing = asyncio.create_task(produce_paced(kafka_bootstrap, topics.input, records, chunk=300,
                                                  pause_seconds=0.05))
    for version in range(2, RELOADS + 2):
        await asyncio.sleep(0.4)  # let a stretch of events go through each pack
        manifest.write_text(manifest.read_text().replace(f'version: "{version - 1}.0"', f'version: "{version}.0"'))
        service.signal(signal.SIGHUP)
        digests.append(service.wait_for_log("rule pack reloaded"))
    await producing
    served = [json.loads(line)["digest"] for line in digests]
    assert len(set(served)) == RELOADS + 1

    expected = {r.event_id for r in records if r.event_id is not None}
    by_partition: dict[int, list[str]] = defaultdict(list)
    seen: set[str] = set()

    def add(record: object) -> bool:
        verdict = decode_verdict(record.value)  # type: ignore[attr-defined]
        header = dict(record.headers)["redline-ruleset-digest"].decode()  # type: ignore[attr-defined]
        assert header == verdict.ruleset.digest
        by_partition[record.partition].append(verdict.ruleset.digest)  # type: ignore[attr-defined]
        seen.add(verdict.event_id)
        return expected <= seen

    await read_all(kafka_bootstrap, topics.output, add, timeout_seconds=60)
    assert expected - seen == set()
    order = {digest: index for index, digest in enumerate(served)}
    switches = 0
    for digests_in_partition in by_partition.values():
        ranks = [order[d] for d in digests_in_partition]  # KeyError = a digest that was never served
        assert ranks == sorted(ranks), "a partition went back to an older pack"
        switches += len(set(ranks)) - 1
    print(f"\nreload under load: {len(expected)} events, {RELOADS} SIGHUP reloads, {len(by_partition)} partitions, "
          f"{switches} pack switches seen, every verdict's header = its body digest")
    assert switches >= 1
    service.signal(signal.SIGTERM)
    assert service.wait(timeout_seconds=30) == 0
