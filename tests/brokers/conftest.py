"""Fixtures of the broker tests: Apache Kafka (session broker and per-test brokers) and tansu."""

from __future__ import annotations

from .plugin import (
    apache_kafka,
    apache_kafka_factory,
    pytest_runtest_makereport,
    tansu_broker,
    tls_files,
)

__all__ = ["apache_kafka", "apache_kafka_factory", "pytest_runtest_makereport", "tansu_broker", "tls_files"]
