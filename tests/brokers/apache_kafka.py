"""Apache Kafka itself for the tests: one KRaft broker+controller JVM run from Maven Central's jars.

    with ApacheKafka(tmp_path) as kafka:        # or start() / stop()
        kafka.bootstrap                          # "127.0.0.1:PORT", PLAINTEXT
        kafka.restart(kill=True)                 # SIGKILL, then the same ports and log directory

`start()` resolves the jars (kafka_jars.py, once per machine), formats the storage directory the
first time (`kafka.tools.StorageTool format`, which is also where SCRAM users are created), starts
`kafka.Kafka server.properties` on free loopback ports and returns once the broker answers an
aiokafka metadata request. The log directory stays on disk after `stop()` and `kill()`, so a
restart serves the same topics, offsets, groups and transactions. Everything the JVM prints goes
to `log_path` (appended across restarts); `log_tail()` gives the end of it for a failing test.

Listeners: PLAINTEXT always (the probe's and the inter-broker listener); with `scram_users`,
SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); with `tls`, SSL and MTLS (SSL that requires
a client certificate); with both, SASL_SSL.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from aiokafka.client import AIOKafkaClient

from service.embedded_broker import free_port

from .kafka_jars import java_binary, kafka_classpath
from .tls import TlsFiles

KIND: Final = "apache-kafka"
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_MECHANISMS: Final = ("SCRAM-SHA-256", "SCRAM-SHA-512")

# Settings for a one-node test cluster: internal topics with one replica and few partitions (the
# defaults, 50 partitions for offsets and transactions, make the first group or transaction slow),
# no delay before a group's first rebalance, sessions as short as the stream tests use (3 s; the
# broker's default floor is 6 s), thread pools sized for a 2-core machine, expired transactions
# aborted within a second of their timeout instead of ten, and a broker session of 4 s instead of 9:
# after a SIGKILL the restarted broker cannot register until its previous session has expired.
TEST_PROPERTIES: Final[Mapping[str, str]] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    "log.segment.bytes": str(16 * 1024 * 1024),
    "log.index.size.max.bytes": str(1024 * 1024),
    "offsets.topic.segment.bytes": str(16 * 1024 * 1024),
    "transaction.state.log.segment.bytes": str(16 * 1024 * 1024),
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "2",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "4000",
}

# C1 only: the JVM reaches "answering" ~0.7 s sooner (median of 3 starts: 1.6 s against 2.4 s) and
# spends no CPU on C2 compiles while tests run on 2 cores. A benchmark of the broker's throughput
# should pass `jvm_options=()` to get the full JIT.
TEST_JVM_OPTIONS: Final = ("-XX:TieredStopAtLevel=1",)

_LOG4J2: Final = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
# Every client and server config is dumped at INFO (hundreds of lines each): server.properties
# beside this file says what the broker was given.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class BrokerStartError(RuntimeError):
    """The broker did not start or did not answer in time; the message ends with its log's tail."""


@dataclass(frozen=True)
class Listener:
    name: str  # the listener's name in server.properties
    protocol: str  # its security protocol
    port: int


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. Like Kafka's own
    # Uuid.randomUuid, never one starting with "-": the storage tool would read it as an option.
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not found.startswith("-"):
            return found


def _run_in_thread(coroutine: Coroutine[Any, Any, bool]) -> bool:
    """Run a probe on its own event loop: callers may be sync tests or coroutines on a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ApacheKafka:
    kind: Final = KIND
    supports_transactions: Final = True
    keeps_data_on_restart: Final = True  # the log directory stays on disk across stop, kill and start

    def __init__(
        self,
        workdir: Path,
        *,
        scram_users: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
        heap_mb: int = 512,
        properties: Mapping[str, str] | None = None,
        jvm_options: tuple[str, ...] = TEST_JVM_OPTIONS,
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.scram_users = dict(scram_users or {})
        for name, password in self.scram_users.items():
            # StorageTool parses `[name=…,password=…]`: keep its separators out of the values.
            if any(c in f"{name}{password}" for c in ",[]=\" "):
                raise ValueError(f"SCRAM user {name!r}: name and password must not contain , [ ] = \" or spaces")
        self.tls = tls
        self.heap_mb = heap_mb
        self.properties = dict(properties or {})
        self.jvm_options = jvm_options
        self.cluster_id = _cluster_id()
        self.controller_port = free_port(host)
        listeners = [Listener("PLAINTEXT", "PLAINTEXT", free_port(host))]
        if self.scram_users:
            listeners.append(Listener("SASL_PLAINTEXT", "SASL_PLAINTEXT", free_port(host)))
        if tls is not None:
            listeners.append(Listener("SSL", "SSL", free_port(host)))
            listeners.append(Listener("MTLS", "SSL", free_port(host)))
            if self.scram_users:
                listeners.append(Listener("SASL_SSL", "SASL_SSL", free_port(host)))
        self.listeners: tuple[Listener, ...] = tuple(listeners)
        self.starts = 0
        self.last_start_seconds = 0.0
        self.last_stop_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses and files -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return self.listener("PLAINTEXT")

    def listener(self, name: str) -> str:
        """`host:port` of a listener: PLAINTEXT, SASL_PLAINTEXT, SSL, MTLS or SASL_SSL."""
        for listener in self.listeners:
            if listener.name == name:
                return f"{self.host}:{listener.port}"
        raise KeyError(f"this broker has no {name} listener (it has {[item.name for item in self.listeners]})")

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.is_file():
            return f"(no broker log at {self.log_path})"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def server_properties(self) -> dict[str, str]:
        names = [listener.name for listener in self.listeners]
        protocols = {listener.name: listener.protocol for listener in self.listeners}
        properties: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join([*(f"{listener.name}://{self.host}:{listener.port}" for listener in self.listeners),
                                   f"CONTROLLER://{self.host}:{self.controller_port}"]),
            "advertised.listeners": ",".join(f"{listener.name}://{self.host}:{listener.port}"
                                             for listener in self.listeners),
            "listener.security.protocol.map": ",".join([*(f"{name}:{protocols[name]}" for name in names),
                                                        "CONTROLLER:PLAINTEXT"]),
            "log.dirs": str(self.data_dir),
            **TEST_PROPERTIES,
        }
        if self.scram_users:
            properties["sasl.enabled.mechanisms"] = ",".join(SASL_MECHANISMS)
            plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.scram_users.items())
            for name in names:
                if protocols[name].startswith("SASL_"):
                    prefix = f"listener.name.{name.lower()}"
                    properties[f"{prefix}.plain.sasl.jaas.config"] = (
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};")
                    for mechanism in _SCRAM_MECHANISMS:
                        properties[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = (
                            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        if self.tls is not None:
            properties.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.broker_keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca_cert),
                "ssl.client.auth": "none",
                "listener.name.mtls.ssl.client.auth": "required",
            })
        properties.update(self.properties)
        return properties

    # -- lifecycle -------------------------------------------------------------------------------

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java_binary(), f"-Xmx{self.heap_mb}m", "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}", *self.jvm_options,
            "-cp", kafka_classpath(), main, *args,
        ]

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in self.server_properties().items()))
        return config

    def _log_marker(self, text: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"===== redline test fixture: {text} at {time.strftime('%H:%M:%S')} =====\n")

    def _format(self, config: Path, timeout_seconds: float) -> None:
        scram = [argument for name, password in self.scram_users.items() for mechanism in _SCRAM_MECHANISMS
                 for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]
        self._log_marker("format storage")
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(config), *scram),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_seconds, check=False)
        if result.returncode != 0:
            raise BrokerStartError(f"formatting {self.data_dir} failed with code {result.returncode}:\n"
                                   f"{self.log_tail(40)}")

    def start(self, timeout_seconds: float = 90.0) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("the broker is already running")
        started = time.monotonic()
        deadline = started + timeout_seconds
        config = self._write_config()
        if not (self.data_dir / "meta.properties").is_file():
            self._format(config, timeout_seconds)
        self.starts += 1
        self._log_marker(f"start {self.starts}")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._java("kafka.Kafka", str(config)), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_answering(deadline)
        except BaseException:
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - started

    def _wait_until_answering(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        port = self.listeners[0].port
        while True:
            if process.poll() is not None:
                raise BrokerStartError(f"Apache Kafka exited with code {process.returncode} during start; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            # The broker opens its client listeners only once it has caught up with the metadata log,
            # so the port is checked first (cheap) and the metadata probe then answers at once.
            if _port_open(self.host, port) and _run_in_thread(self._answers_metadata()):
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(f"Apache Kafka did not answer a metadata request on {self.bootstrap} "
                                       f"in time; log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.1)  # a JVM still starting: there is no event to await

    async def _answers_metadata(self) -> bool:
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        except Exception:  # any failure means "not yet": the caller retries until its deadline
            return False
        finally:
            await client.close()

    def stop(self, timeout_seconds: float = 20.0) -> None:
        """SIGTERM (a controlled shutdown that flushes the log), SIGKILL after `timeout_seconds`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        started = time.monotonic()
        self._log_marker("SIGTERM")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self._log_marker(f"no exit {timeout_seconds:.0f}s after SIGTERM: SIGKILL")
            process.kill()
            process.wait()
        self.last_stop_seconds = time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as when the machine dies; the log directory stays."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        self._log_marker("SIGKILL")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self, *, kill: bool = False, timeout_seconds: float = 90.0) -> None:
        """Stop (SIGTERM, or SIGKILL with `kill=True`) and start again on the same ports and data."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start(timeout_seconds)

    def __enter__(self) -> ApacheKafka:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
