"""Counters (`seen`) on the real brokers: counted by one owner per key across two service processes,
carried over a restart by the changelog, and through two owners for a rule with two counters. On
tansu at_least_once; on Apache Kafka exactly_once (the changelog, forwards and verdicts of a counter
partition in one transaction), where every count is also checked for duplicates."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from service.embedded_broker import free_port
from service.events import Verdict, decode_verdict
from service.sample_traffic import SampleRecord
from tests.kafka_helpers import (
    REPO,
    ServiceProcess,
    StartService,
    StreamBroker,
    Topics,
    assignment_of,
    produce,
    read_all,
    read_to_end,
)

PACK = str(REPO / "tests" / "packs" / "counters")
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def event(event_id: str, chat: str, text: str, *, sender: str = "u0", minute: int = 0) -> SampleRecord:
    value = {"id": event_id, "chat": {"id": chat}, "sender": {"id": sender}, "text": text,
             "sent_at": (START + timedelta(minutes=minute)).isoformat()}
    return SampleRecord(chat.encode(), json.dumps(value, ensure_ascii=False).encode(), event_id)


async def verdicts_of(
    broker: StreamBroker, topic: str, ids: set[str], timeout_seconds: float = 60
) -> dict[str, Verdict]:
    found: dict[str, Verdict] = {}

    def note(record: Any) -> bool:
        verdict = decode_verdict(record.value)
        found[verdict.event_id] = verdict
        return ids <= found.keys()

    await read_all(broker, topic, note, timeout_seconds)
    missing = ids - found.keys()
    assert not missing, f"no verdict for {sorted(missing)}"
    return found


def matched(verdict: Verdict, rule: str) -> bool:
    return any(m.rule == rule for m in verdict.matches)


def wait_for_counter_partitions(services: list[ServiceProcess], total: int) -> None:
    """Until the members' latest counter assignments add up to every partition."""
    latest: dict[int, list[int]] = {}
    while sum(len(p) for p in latest.values()) != total:
        for index, service in enumerate(services):
            if not service.lines.empty() or index not in latest:
                latest[index] = assignment_of(service.wait_for_log("counter partitions assigned"))


async def test_two_processes_count_each_key_once_across_partitions(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    env = topics.env(broker, free_port(), REDLINE_RULES=PACK)
    first = service_factory(env)
    first.wait_for_log("counter partitions assigned")
    second = service_factory({**env, "REDLINE_HTTP_PORT": str(free_port())})
    wait_for_counter_partitions([first, second], 4)

    # Eight rumours, each posted in four chats; the chats hash to every input partition, so both
    # processes take first passes, and the rumours' keys hash to both owners.
    records = [event(f"r{r}-c{c}", f"chat-{r}-{c}", f"网传第{r}号消息，速转", minute=c)
               for c in range(4) for r in range(8)]
    records += [event(f"plain-{i}", f"chat-p{i}", "今天的会议改到下午三点") for i in range(20)]
    # Rule with two counters: same content in two chats AND the same sender in two chats.
    records += [event("v1", "chat-v1", "明天投我一票", sender="s1"),
                event("v2", "chat-v2", "明天投我一票", sender="s1", minute=1),
                event("v3", "chat-v3", "明天投我一票", sender="s2", minute=2)]
    await produce(broker, topics.input, records)
    verdicts = await verdicts_of(broker, topics.output, {r.event_id for r in records if r.event_id})

    for r in range(8):
        hits = [c for c in range(4) if matched(verdicts[f"r{r}-c{c}"], "rumor.spread")]
        # Counted in produce order per key? Not across partitions: exactly two of four reach 3 chats.
        assert len(hits) == 2, (r, hits)
        assert all(verdicts[f"r{r}-c{c}"].action == "block" for c in hits)
    assert not any(v.matches for k, v in verdicts.items() if k.startswith("plain-"))
    # v1 and v2 share sender and content; the content owner counts all three (in arrival order)
    # and passes each on to the sender's owner in that order: of v1 and v2, the second there has
    # both counts at 2. v3's sender posted once, so v3 never matches.
    vote_hits = [k for k in ("v1", "v2", "v3") if matched(verdicts[k], "vote.sender_and_content")]
    assert len(vote_hits) == 1
    assert vote_hits[0] in ("v1", "v2")
    assert len(verdicts) == len(records)  # one verdict per event: the counted ones came once each

    for service in (first, second):
        service.signal(signal.SIGTERM)
        assert service.wait() == 0, service.log_tail()
    if broker.exactly_once:
        written = [decode_verdict(r.value).event_id for r in await read_to_end(broker, topics.output)]
        assert sorted(written) == sorted(verdicts)


async def test_counts_survive_a_restart_through_the_changelog(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    env = topics.env(broker, free_port(), REDLINE_RULES=PACK)
    text = "网传下月起停发补贴，速转"
    before = [event(f"b{c}", f"chat-{c}", text, minute=c) for c in range(2)]
    service = service_factory(env)
    service.wait_for_log("counter partitions assigned")
    await produce(broker, topics.input, before)
    verdicts = await verdicts_of(broker, topics.output, {"b0", "b1"})
    assert not any(matched(v, "rumor.spread") for v in verdicts.values())
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()

    restarted = service_factory({**env, "REDLINE_HTTP_PORT": str(free_port())})
    line = restarted.wait_for_log("counter partitions assigned")
    assert json.loads(line)["restored_keys"] >= 1, line
    after = [event(f"a{c}", f"chat-{c}", text, minute=c) for c in range(2, 4)]
    await produce(broker, topics.input, after)
    verdicts = await verdicts_of(broker, topics.output, {"b0", "b1", "a2", "a3"})
    # Two chats before the restart + the third after it: the third chat reaches the threshold.
    assert matched(verdicts["a2"], "rumor.spread")
    assert matched(verdicts["a3"], "rumor.spread")
    restarted.signal(signal.SIGTERM)
    assert restarted.wait() == 0, restarted.log_tail()


async def test_a_record_on_the_counter_topic_that_is_not_a_request_is_dead_lettered(
    broker: StreamBroker, topics: Topics, service_factory: StartService
) -> None:
    env = topics.env(broker, free_port(), REDLINE_RULES=PACK)
    service = service_factory(env)
    service.wait_for_log("counter partitions assigned")
    counter_topic = f"{topics.group}.counters"  # the default: one set of counters per group
    await produce(broker, counter_topic, [SampleRecord(b"k", b"\x92not msgpack of a request", None)])
    await produce(broker, topics.input, [event("after", "chat-1", "网传明天停水，速转")])
    letters: list[Any] = []
    await read_all(broker, topics.dlq, lambda r: bool(letters.append(r)) or True, 60)
    headers = dict(letters[0].headers)
    assert headers["redline-dlq-reason"] == b"invalid_counter_request"
    assert headers["redline-source-topic"] == counter_topic.encode()
    # The owner went on: the next request was counted and its event got its verdict.
    assert "after" in await verdicts_of(broker, topics.output, {"after"})
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()
