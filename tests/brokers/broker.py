"""What a test needs of a broker, whichever kind it is, so suites can run against tansu and Apache Kafka.

    @pytest.fixture(params=["tansu", "apache-kafka"])
    def broker(request) -> Broker: ...

A test reads `kind` and `supports_transactions` instead of guessing from the bootstrap string.
`restart(kill=True)` is a crash (SIGKILL); `restart()` a clean stop. Whether data survives a
restart depends on the kind: Apache Kafka keeps its log directory; tansu's memory storage loses
everything (tests/reliability/persistent_broker.py runs tansu on S3 storage for that).
"""

from __future__ import annotations

import os
import signal
from typing import Final, Protocol, runtime_checkable

from service.embedded_broker import EmbeddedBroker


@runtime_checkable
class Broker(Protocol):
    kind: str  # "tansu" | "apache-kafka"
    supports_transactions: bool  # InitProducerId answered: idempotent and transactional producers work
    keeps_data_on_restart: bool

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self, *, kill: bool = False) -> None: ...


class TansuBroker(EmbeddedBroker):
    """The embedded tansu broker (memory storage) seen through the `Broker` protocol."""

    kind: Final = "tansu"
    supports_transactions: Final = False  # it refuses InitProducerId v0, which aiokafka sends
    keeps_data_on_restart: Final = False

    def kill(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        self.stop()  # reaps the process

    def restart(self, *, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()
