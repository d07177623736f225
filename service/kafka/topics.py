"""Create the stream's topics on start when allowed (partitions and retention from Settings).

Existing topics are left as they are: partitions and retention of a live topic are the operator's,
and changing them here would surprise a running cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from service.kafka.options import client_options
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    def spec(name: str, retention_ms: int, **extra: str) -> TopicSpec:
        return TopicSpec(
            name,
            settings.topic_partitions,
            settings.topic_replication_factor,
            {"retention.ms": str(retention_ms), **extra},
        )

    # Dead letters keep the original record: the DLQ must accept the largest value we keep.
    dlq_bytes = str(settings.dead_letter_max_value_bytes + 1024 * 1024)
    return [
        spec(settings.input_topic, settings.event_retention_ms),
        spec(settings.output_topic, settings.verdict_retention_ms),
        spec(settings.dlq_topic, settings.dlq_retention_ms, **{"max.message.bytes": dlq_bytes}),
        # A counter request carries its event: it must take what the input topic takes.
        spec(settings.counter_requests_topic, settings.counter_request_retention_ms),
        # Co-partitioned with the requests (a key's state lives in the partition its requests use);
        # compaction keeps the newest state per key, tombstones remove expired keys.
        TopicSpec(settings.counter_state_topic, settings.topic_partitions, settings.topic_replication_factor,
                  {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; returns the names created. Errors other than 'exists' raise."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs) for s in missing]
        )
        created: list[str] = []
        for name, code, *_ in response.topic_errors:
            if code == 0:
                created.append(name)
            elif for_code(code) is not TopicAlreadyExistsError:  # a concurrent replica won the race
                raise for_code(code)(f"creating topic {name!r}")
        if created:
            log.info("topics created", extra={"topics": created, "partitions": settings.topic_partitions})
        return created
    finally:
        await admin.close()
