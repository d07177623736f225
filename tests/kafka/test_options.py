"""Kafka client options and topic specs from Settings (no broker)."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from service.kafka.options import client_options, consumer_options, producer_options
from service.kafka.topics import topic_specs
from service.settings import Settings

SIX_MONTHS_MS = 180 * 24 * 3600 * 1000


def test_verdict_topic_keeps_six_months_by_default() -> None:
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    assert int(specs["chat.verdicts"].configs["retention.ms"]) >= SIX_MONTHS_MS


def test_sasl_scram_over_tls_options() -> None:
    options = client_options(Settings(
        kafka_bootstrap="b1:9093, b2:9093", kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="redline", kafka_sasl_password="pw",
    ))
    assert options["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "redline"
    assert options["ssl_context"] is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"kafka_security_protocol": "SASL_PLAINTEXT"},  # SASL without a user name
        # A protocol or mechanism that does not exist is refused earlier, by the settings
        # themselves (tests/test_settings.py).
    ],
)
def test_unusable_security_settings_are_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        client_options(Settings(kafka_bootstrap="b:9092", **overrides))  # type: ignore[arg-type]


def test_producer_never_enables_idempotence() -> None:
    options = producer_options(Settings(kafka_bootstrap="b:9092"))
    assert options["acks"] == "all"
    assert "enable_idempotence" not in options


def test_consumers_commit_themselves_in_their_own_group() -> None:
    settings = Settings(kafka_bootstrap="b:9092", group_id="redline")
    assert consumer_options(settings)["group_id"] == "redline"
    assert consumer_options(settings, "redline.counters")["group_id"] == "redline.counters"
    assert consumer_options(settings)["enable_auto_commit"] is False  # the commit window commits
