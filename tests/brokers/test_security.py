"""Redline's documented Kafka security settings against Apache Kafka's real SASL and TLS listeners.

Every client here is built by `service.kafka.options` from a `Settings`, exactly as the
stream builds its own, so these are the settings docs/stream.md documents.
"""

from __future__ import annotations

import logging
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from service.kafka.options import client_options, consumer_options, producer_options
from service.settings import Settings

from .apache_kafka import ApacheKafka
from .clients import create_topic, unique
from .plugin import SCRAM_USERS
from .tls import TlsFiles

USER, PASSWORD = next(iter(SCRAM_USERS.items()))


def _settings(kafka: ApacheKafka, tls: TlsFiles, listener: str, protocol: str, **values: object) -> Settings:
    return Settings(kafka_bootstrap=kafka.listener(listener), kafka_security_protocol=protocol,
                    kafka_ssl_cafile=str(tls.ca_cert), group_id=unique("security-group"), **values)  # type: ignore[arg-type]


CONNECTS = [
    # (listener, REDLINE_KAFKA_SECURITY_PROTOCOL, SASL mechanism, mutual TLS)
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-512", False),
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-256", False),
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT", "PLAIN", False),  # PLAIN's users live in the broker's JAAS config
    ("SSL", "SSL", None, False),  # server certificate checked against the throwaway CA, host name included
    ("MTLS", "SSL", None, True),  # the listener requires a client certificate: REDLINE_KAFKA_SSL_CERTFILE/_KEYFILE
    ("SASL_SSL", "SASL_SSL", "SCRAM-SHA-512", False),
]


@pytest.mark.parametrize(("listener", "protocol", "mechanism", "mutual"), CONNECTS)
async def test_redline_settings_connect_produce_and_consume(
    apache_kafka: ApacheKafka, tls_files: TlsFiles, listener: str, protocol: str, mechanism: str | None,
    mutual: bool,
) -> None:
    values: dict[str, object] = {}
    if mechanism is not None:
        values.update(kafka_sasl_mechanism=mechanism, kafka_sasl_username=USER, kafka_sasl_password=PASSWORD)
    if mutual:
        values.update(kafka_ssl_certfile=str(tls_files.client_cert), kafka_ssl_keyfile=str(tls_files.client_key))
    settings = _settings(apache_kafka, tls_files, listener, protocol, **values)
    topic = unique(f"secure-{listener.lower()}")
    await create_topic(settings.kafka_bootstrap, topic,
                       options={k: v for k, v in client_options(settings).items() if k != "bootstrap_servers"})

    producer = AIOKafkaProducer(**producer_options(settings))
    await producer.start()
    try:
        for i in range(5):
            await producer.send(topic, f"secure-{i}".encode(), key=b"chat-1", headers=[("h", b"v")])
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **consumer_options(settings))
    await consumer.start()
    try:
        seen: list[bytes | None] = []
        while len(seen) < 5:
            for batch in (await consumer.getmany(timeout_ms=5000)).values():
                seen.extend(record.value for record in batch)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert seen == [f"secure-{i}".encode() for i in range(5)]


WRONG_PASSWORDS = [
    # (listener, protocol, mechanism, what the broker says)
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT", "SCRAM-SHA-512", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT", "PLAIN", "Invalid username or password"),
    ("SASL_SSL", "SASL_SSL", "SCRAM-SHA-512", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
]


@pytest.mark.parametrize(("listener", "protocol", "mechanism", "reason"), WRONG_PASSWORDS)
async def test_a_wrong_password_fails_fast_and_the_reason_is_logged(
    apache_kafka: ApacheKafka, tls_files: TlsFiles, listener: str, protocol: str, mechanism: str, reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(apache_kafka, tls_files, listener, protocol, kafka_sasl_mechanism=mechanism,
                         kafka_sasl_username=USER, kafka_sasl_password="not-the-password")
    consumer = AIOKafkaConsumer(unique("never"), **consumer_options(settings))
    started = time.monotonic()
    caplog.set_level(logging.ERROR, logger="aiokafka")
    try:
        # aiokafka turns the broker's answer into a generic bootstrap failure: no retry, no timeout wait.
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await consumer.start()
    finally:
        await consumer.stop()
    elapsed = time.monotonic() - started
    # The reason is only in aiokafka's ERROR log line, which Redline's log shows.
    assert any("SaslAuthenticationFailed" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    # No retry loop and no timeout is waited for (measured ~0.3 s, the SCRAM exchange): 5 s is a wide bound.
    assert elapsed < 5, f"took {elapsed:.2f} s"
    print(f"\n{protocol} {mechanism} wrong password refused in {elapsed * 1000:.0f} ms")


async def test_one_direct_connection_raises_the_authentication_error_itself(
    apache_kafka: ApacheKafka, tls_files: TlsFiles,
) -> None:
    """How a service can report the precise reason: aiokafka's `create_conn` raises it unwrapped."""
    settings = _settings(apache_kafka, tls_files, "SASL_SSL", "SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username=USER, kafka_sasl_password="not-the-password")
    options = client_options(settings)
    host, port = settings.kafka_bootstrap.rsplit(":", 1)
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        await create_conn(host, int(port), **{k: v for k, v in options.items() if k != "bootstrap_servers"})


TLS_REFUSALS = [
    # (listener, settings, the reason aiokafka logs)
    ("SSL", {"kafka_ssl_cafile": ""}, "CERTIFICATE_VERIFY_FAILED"),  # system CAs do not know the throwaway CA
    ("MTLS", {}, "closed"),  # no client certificate: the broker closes the handshake
]


@pytest.mark.parametrize(("listener", "overrides", "reason"), TLS_REFUSALS)
async def test_tls_refusals_fail_fast(
    apache_kafka: ApacheKafka, tls_files: TlsFiles, listener: str, overrides: dict[str, object], reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(apache_kafka, tls_files, listener, "SSL").model_copy(update=overrides)
    producer = AIOKafkaProducer(**producer_options(settings))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    started = time.monotonic()
    try:
        with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
            await producer.start()
    finally:
        await producer.stop()
    assert time.monotonic() - started < 5
    assert any(reason in r.getMessage() for r in caplog.records)
