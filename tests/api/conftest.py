"""Fixtures for the API tests: the app over ASGI (httpx.ASGITransport) and a real `redline serve`
process on a free loopback port, each serving its own copy of a rule pack (tests edit and break
their copy)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.engine.classifier import Engine
from service.rules.loader import load_pack
from service.runtime import Runtime
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PACK_SOURCE = REPO / "tests" / "packs" / "mini"
CHECK_KEY = "chk-3f6a1c0e9b7d4a21"
ADMIN_KEY = "adm-8e2b5d7c1a904f36"

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def shared_engine() -> Engine:
    return load_pack(PACK_SOURCE)


@pytest.fixture
def runtime(shared_engine: Engine) -> Runtime:
    """A runtime on the (read-only) shared engine; tests that reload use `reloadable_runtime`."""
    return Runtime(settings=Settings(rules=PACK_SOURCE), engine=shared_engine)


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PACK_SOURCE, tmp_path / "pack"))


@pytest.fixture
def reloadable_runtime(pack_dir: Path) -> Runtime:
    """A runtime serving its own copy of the pack, which the test may edit or break; reloads over
    HTTP need an admin key (ADMIN_KEY)."""
    return Runtime.load(Settings(rules=pack_dir, admin_keys=ADMIN_KEY))


@asynccontextmanager
async def asgi_client(
    runtime: Runtime, root_path: str = "", headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://redline.test", headers=headers) as client:
        yield client
    app.state.verdict_tally.flush()  # no pending count may land in a later test's measurement


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(runtime) as c:
        yield c


@pytest.fixture
def make_client(shared_engine: Engine) -> ClientFactory:
    """A client for an app built with settings overrides (keys, limits) on the shared engine."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        settings = Settings(rules=PACK_SOURCE, **overrides)
        return asgi_client(Runtime(settings=settings, engine=shared_engine))

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """`python -m service serve` in a subprocess; its JSON log lines are read as they come."""

    def __init__(self, pack: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pack = pack
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
        full_env |= {
            "REDLINE_RULES": str(pack),
            "REDLINE_HTTP_HOST": "127.0.0.1",
            "REDLINE_HTTP_PORT": str(self.port),
            "REDLINE_KAFKA_BOOTSTRAP": "",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.logs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"msg": raw.decode(errors="replace").rstrip()}
            self.logs.put(record)

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Block until a log record satisfies `predicate` (the server's own signal that it happened)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self.logs.empty()):
                raise AssertionError(f"log record not seen; seen so far: {self.seen[-20:]}")
            try:
                record = self.logs.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.seen.append(record)
            if predicate(record):
                return record

    def start(self) -> LiveServer:
        self.wait_for_log(lambda r: "Application startup complete" in str(r.get("msg")))
        return self

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Factory: start a server on a copy of the pack with extra REDLINE_* environment."""
    servers: list[LiveServer] = []

    def start(source: Path = PACK_SOURCE, **env: str) -> LiveServer:
        pack = Path(shutil.copytree(source, tmp_path / f"live-pack-{len(servers)}"))
        server = LiveServer(pack, env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
