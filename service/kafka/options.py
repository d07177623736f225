"""aiokafka client options from Settings: bootstrap, security (TLS, SASL PLAIN/SCRAM), tuning.

The stream, the counter owner, the topic admin and `redline dev` build their clients from these
functions only, so a production cluster's security settings apply to every connection Redline opens.
"""

from __future__ import annotations

import ssl
from typing import Final

from service.errors import ConfigError
from service.settings import Settings

SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS: Final = ("none", "gzip", "snappy", "lz4", "zstd")


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def client_options(settings: Settings) -> dict[str, object]:
    """Connection options shared by consumer, producer and admin client."""
    protocol = settings.kafka_security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(f"kafka_security_protocol must be one of {SECURITY_PROTOCOLS}, not {protocol!r}")
    options: dict[str, object] = {
        "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()],
        "security_protocol": protocol,
        "client_id": "redline",
    }
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL_"):
        mechanism = settings.kafka_sasl_mechanism.upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"kafka_sasl_mechanism must be one of {SASL_MECHANISMS}, not {mechanism!r}")
        if not settings.kafka_sasl_username:
            raise ConfigError("SASL needs kafka_sasl_username and kafka_sasl_password")
        # aiokafka takes SCRAM credentials under the same `sasl_plain_*` names.
        options.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def consumer_options(settings: Settings, group_id: str | None = None) -> dict[str, object]:
    """A consumer group member's options; the group is the stream's unless `group_id` is given."""
    return {
        **client_options(settings),
        "group_id": group_id or settings.group_id,
        # Offsets are committed by the commit window after the outputs were acknowledged.
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.batch_max_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": min(settings.heartbeat_interval_ms, settings.session_timeout_ms // 3),
        # A partition's fetch must be able to carry one record just over the size limit, so that
        # the record can be read and dead-lettered instead of blocking the partition.
        "max_partition_fetch_bytes": max(1024 * 1024, settings.max_record_bytes + 64 * 1024),
        "fetch_max_bytes": max(52_428_800, settings.max_record_bytes + 64 * 1024),
        "retry_backoff_ms": 200,
        # exactly_once: the input may hold aborted records of a transactional chat backend, and
        # Redline's own counter topic those of a member that died mid-transaction; neither exists.
        "isolation_level": "read_committed" if settings.exactly_once else "read_uncommitted",
    }


def producer_options(settings: Settings) -> dict[str, object]:
    compression = settings.producer_compression.lower()
    if compression not in COMPRESSIONS:
        raise ConfigError(f"producer_compression must be one of {COMPRESSIONS}, not {compression!r}")
    return {
        **client_options(settings),
        # acks=all: a verdict counts as produced only once the in-sync replicas have it.
        # Idempotence stays off: tansu refuses InitProducerId (docs/stream.md); ordering per partition
        # still holds because aiokafka keeps one request in flight per partition.
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": settings.producer_max_batch_bytes,
        "max_request_size": max(settings.dead_letter_max_value_bytes, settings.producer_max_batch_bytes)
        + 1024 * 1024,
        "compression_type": None if compression == "none" else compression,
        "request_timeout_ms": settings.producer_request_timeout_ms,
        "retry_backoff_ms": 200,
    }


def transactional_producer_options(settings: Settings, transactional_id: str) -> dict[str, object]:
    """A producer of one input partition's transactions (exactly_once): idempotent, acks=all."""
    return {
        **producer_options(settings),
        "transactional_id": transactional_id,
        "transaction_timeout_ms": settings.transaction_timeout_ms,
    }
