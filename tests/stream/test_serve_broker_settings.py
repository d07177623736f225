"""`redline serve` itself against what a broker demands and offers: SASL/SCRAM and TLS listeners of
Apache Kafka (with the settings docs/stream.md documents), and the start-up refusals — a wrong
password, a certificate nobody vouches for, exactly_once on a broker without transactions — each
one clear line and exit 2, before the pack is even compiled, with no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from service.embedded_broker import free_port
from service.sample_traffic import SampleTraffic
from tests.brokers.apache_kafka import ApacheKafka
from tests.brokers.plugin import SCRAM_USERS
from tests.brokers.tls import TlsFiles
from tests.kafka_helpers import REPO, StartService, StreamBroker, Topics, produce, read_to_end, read_verdicts

USER, PASSWORD = next(iter(SCRAM_USERS.items()))

SECURE = [
    # (listener, environment beyond bootstrap and CA, delivery)
    ("SASL_SSL", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "REDLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "REDLINE_KAFKA_SASL_USERNAME": USER, "REDLINE_KAFKA_SASL_PASSWORD": PASSWORD}, "exactly_once"),
    ("SASL_PLAINTEXT", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "REDLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                        "REDLINE_KAFKA_SASL_USERNAME": USER, "REDLINE_KAFKA_SASL_PASSWORD": PASSWORD}, "at_least_once"),
    ("MTLS", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SSL"}, "at_least_once"),  # + client certificate below
]


@pytest.mark.parametrize(("listener", "security", "delivery"), SECURE, ids=[s[0] for s in SECURE])
async def test_serve_streams_through_a_secured_listener(
    apache_kafka: ApacheKafka, tls_files: TlsFiles, topics: Topics, service_factory: StartService,
    listener: str, security: dict[str, str], delivery: str,
) -> None:
    # The test's own clients use the plain listener of the same broker: only Redline's are secured.
    broker = StreamBroker("apache-kafka", apache_kafka.bootstrap, delivery)
    env = topics.env(broker, free_port(), REDLINE_KAFKA_BOOTSTRAP=apache_kafka.listener(listener),
                     REDLINE_KAFKA_SSL_CAFILE=str(tls_files.ca_cert), **security)
    if listener == "MTLS":
        env |= {"REDLINE_KAFKA_SSL_CERTFILE": str(tls_files.client_cert),
                "REDLINE_KAFKA_SSL_KEYFILE": str(tls_files.client_key)}
    service = service_factory(env)
    service.wait_for_log("counter partitions assigned")  # both loops are in: topics created by Redline
    records = SampleTraffic(seed=41, malformed_ratio=0.0, id_prefix=f"secure-{listener}").records(500)
    expected = {r.event_id for r in records if r.event_id is not None}
    await produce(broker, topics.input, records)
    verdicts = await read_verdicts(broker, topics.output, expected, timeout_seconds=60)
    assert expected - verdicts.keys() == set()
    service.signal(signal.SIGTERM)
    assert service.wait() == 0, service.log_tail()
    if broker.exactly_once:
        assert len(await read_to_end(broker, topics.output)) == len(expected)


def _serve(env: dict[str, str], timeout_seconds: float = 30.0) -> tuple[int, list[str], float]:
    """Run `redline serve` to its end: exit code, stderr lines that are not JSON log records, seconds."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "service", "serve"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout_seconds, check=False)
    lines = done.stderr.splitlines()
    assert not any("Traceback" in line for line in lines), done.stderr
    plain = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            plain.append(line)
    return done.returncode, plain, time.monotonic() - started


def _environment(topics: Topics, bootstrap: str, **values: str) -> dict[str, str]:
    return {**os.environ, **topics.env(bootstrap, free_port(), **values)}


REFUSALS = [
    # (listener, settings, what the one line says)
    ("SASL_SSL", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "REDLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                  "REDLINE_KAFKA_SASL_USERNAME": USER, "REDLINE_KAFKA_SASL_PASSWORD": "not-the-password"},
     f"refused the SASL login of user '{USER}' (SCRAM-SHA-512): Authentication failed during authentication due "
     "to invalid credentials with SASL mechanism SCRAM-SHA-512 (REDLINE_KAFKA_SASL_USERNAME, "
     "REDLINE_KAFKA_SASL_PASSWORD)"),
    ("SASL_PLAINTEXT", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "REDLINE_KAFKA_SASL_MECHANISM": "PLAIN",
                        "REDLINE_KAFKA_SASL_USERNAME": USER, "REDLINE_KAFKA_SASL_PASSWORD": "not-the-password"},
     f"refused the SASL login of user '{USER}' (PLAIN): Authentication failed: Invalid username or password"),
    ("SSL", {"REDLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "REDLINE_KAFKA_SSL_CAFILE": ""},
     "presented a TLS certificate that is not trusted: self-signed certificate in certificate chain "
     "(REDLINE_KAFKA_SSL_CAFILE names the CA bundle that signs it"),
]


@pytest.mark.parametrize(("listener", "security", "says"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_refused_login_stops_serve_at_once_with_the_brokers_reason(
    apache_kafka: ApacheKafka, tls_files: TlsFiles, topics: Topics, listener: str, security: dict[str, str],
    says: str,
) -> None:
    # The CA is the right one unless the case itself takes it away.
    env = _environment(topics, apache_kafka.listener(listener),
                       **{"REDLINE_KAFKA_SSL_CAFILE": str(tls_files.ca_cert), **security})
    code, plain, seconds = _serve(env)
    assert code == 2
    assert len(plain) == 1, plain
    assert plain[0].startswith(f"redline serve: Kafka at {apache_kafka.listener(listener)} ")
    assert says in plain[0]
    assert seconds < 10  # measured ~1 s (the interpreter's start): the broker refuses in ~0.3 s
    print(f"\n{listener}: exit {code} in {seconds:.1f} s: {plain[0]}")


def test_exactly_once_on_a_broker_without_transactions_is_refused_at_start(
    kafka_bootstrap: str, topics: Topics,
) -> None:
    code, plain, seconds = _serve(_environment(topics, kafka_bootstrap, REDLINE_DELIVERY="exactly_once"))
    assert code == 2
    assert plain == ["redline serve: exactly_once delivery cannot run: the broker refused InitProducerId "
                     "(UnknownError): it offers no transactions to this client "
                     "(REDLINE_DELIVERY=at_least_once works with any broker)"]
    assert seconds < 10
