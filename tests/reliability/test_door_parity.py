"""One engine, three doors: the same events through `redline check` (CLI), `POST /check` on a real
server and the Kafka stream of that server get identical verdicts apart from `decided_at`.

The events carry `sent_at`, so calendar rules (election windows) see the same time at every door;
the default pack decides, so matches, evidence offsets and reasons are all compared.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import httpx
import msgspec

from service.embedded_broker import free_port
from service.events import Verdict, decode_verdict
from service.sample_traffic import SampleRecord, SampleTraffic
from service.settings import bundled_rules_dir
from tests.kafka_helpers import REPO, STREAM_ASSIGNED, StartService, Topics, produce
from tests.reliability.accounting import VerdictLedger, read_all

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One day inside no calendar window and one a pack might flag (New Year, elections): both are fixed.
SENT_AT = (datetime(2025, 6, 3, 9, 30, tzinfo=UTC), datetime(2026, 2, 17, 20, 0, tzinfo=UTC))


def _comparable(verdict: Verdict) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(verdict, decided_at=_EPOCH))


def _events(count: int) -> list[bytes]:
    traffic = SampleTraffic(seed=71, malformed_ratio=0.0, id_prefix="door")
    encoder = msgspec.json.Encoder()
    return [encoder.encode(traffic.event(SENT_AT[i % len(SENT_AT)])) for i in range(count)]


async def test_cli_http_and_stream_give_identical_verdicts(
    kafka_bootstrap: str, topics: Topics, service_factory: StartService
) -> None:
    events = _events(400)
    port = free_port()
    server = service_factory(topics.env(kafka_bootstrap, port, REDLINE_RULES=str(bundled_rules_dir())))
    server.wait_for_log(STREAM_ASSIGNED)

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "check", "--rules", str(bundled_rules_dir()), cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(cli.communicate(b"\n".join(events) + b"\n"), 120)
    assert cli.returncode == 0
    by_cli = {v.event_id: _comparable(v) for v in map(decode_verdict, stdout.splitlines())}

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        responses = [
            await client.post("/check", content=e, headers={"Content-Type": "application/json"}) for e in events
        ]
    assert {r.status_code for r in responses} == {200}
    by_http = {v.event_id: _comparable(v) for v in (decode_verdict(r.content) for r in responses)}

    records = [SampleRecord(key=b"door", value=e, event_id=None) for e in events]
    await produce(kafka_bootstrap, topics.input, records)
    ledger = VerdictLedger(set(by_cli))
    await read_all(kafka_bootstrap, topics.output, ledger.add, timeout_seconds=60)
    assert ledger.missing == set()
    by_stream = dict(ledger.first)

    assert len(by_cli) == len(events)
    differing = [i for i in by_cli if not by_cli[i] == by_http[i] == by_stream[i]]
    assert differing == [], f"{len(differing)} events decided differently, e.g. {differing[:3]}"
    flagged = sum(1 for v in by_cli.values() if b'"action":"allow"' not in v)
    print(f"\ndoor parity: {len(events)} events, {flagged} not allowed, identical at CLI, HTTP and stream")
    assert flagged > 0, "the sample should exercise some rules"
