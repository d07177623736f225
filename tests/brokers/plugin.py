"""Pytest fixtures for Apache Kafka, and the broker log attached to a failing test's report.

tests/brokers/conftest.py imports these names; another conftest can do the same
(`from brokers.plugin import apache_kafka, pytest_runtest_makereport`) to run its suite on Apache
Kafka, e.g. with a fixture parametrised over `tansu_broker` and `apache_kafka`.

Without Java or Maven the fixtures skip their tests, except under CI (`CI` set), where a missing
tool is a failure: .ci/run installs both, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from .apache_kafka import ApacheKafka
from .broker import TansuBroker
from .kafka_jars import KafkaToolsMissing, java_binary, maven_binary
from .tls import TlsFiles, make_tls_files

# Created when the storage is formatted; every SASL mechanism of the broker accepts them.
SCRAM_USERS = {"redline": "redline-secret"}
LOG_LINES_ON_FAILURE = 80


def _require_java_and_maven() -> None:
    try:
        java_binary()
        maven_binary()
    except KafkaToolsMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must install it: see .ci/run)")
        pytest.skip(str(exc))


class ApacheKafkaFactory:
    """Brokers a test starts for itself (restarts, crashes, odd settings); all stopped afterwards."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.brokers: list[ApacheKafka] = []

    def __call__(
        self, *, scram_users: Mapping[str, str] | None = None, tls: TlsFiles | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ApacheKafka:
        _require_java_and_maven()
        broker = ApacheKafka(self.directory / f"broker-{len(self.brokers) + 1}", scram_users=scram_users, tls=tls,
                             properties=properties)
        self.brokers.append(broker)
        return broker

    def stop_all(self) -> None:
        for broker in self.brokers:
            broker.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA, the broker's key store and a client certificate."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[ApacheKafka]:
    """One Apache Kafka for the session with every listener: PLAINTEXT (`bootstrap`), SASL_PLAINTEXT,
    SSL, MTLS and SASL_SSL. Tests isolate themselves by topic and group names, and do not restart it
    (use `apache_kafka_factory` for that)."""
    _require_java_and_maven()
    broker = ApacheKafka(tmp_path_factory.mktemp("apache-kafka"), scram_users=SCRAM_USERS, tls=tls_files)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def apache_kafka_factory(tmp_path: Path) -> Iterator[ApacheKafkaFactory]:
    factory = ApacheKafkaFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def tansu_broker() -> Iterator[TansuBroker]:
    """tansu through the same `Broker` protocol (a test's own: it starts in milliseconds)."""
    broker = TansuBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _brokers_of(item: pytest.Item) -> list[ApacheKafka]:
    found: list[ApacheKafka] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ApacheKafka):
            found.append(value)
        elif isinstance(value, ApacheKafkaFactory):
            found.extend(value.brokers)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for broker in _brokers_of(item):
            report.sections.append((f"Apache Kafka log, last {LOG_LINES_ON_FAILURE} lines ({broker.log_path})",
                                    broker.log_tail(LOG_LINES_ON_FAILURE)))
    return report
