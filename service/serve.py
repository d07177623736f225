"""`redline serve`: the HTTP API and, when a bootstrap is set, the Kafka stream, in one event loop.

Signals: SIGTERM/SIGINT → the stream drains (finishes and commits in-flight batches within
`drain_timeout_seconds`), then HTTP stops, exit 0. SIGHUP → reload the rule pack (a refused pack
is logged and the old one keeps serving). Exit 2 when the pack cannot be loaded at start or the
broker refuses the stream's settings (service/kafka/preflight.py: a wrong SASL password, an
untrusted certificate, exactly_once against a broker without transactions), 1 when the stream or
the HTTP server failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import resource
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
from prometheus_client import REGISTRY, CollectorRegistry

from service.api.connection_guard import GuardedServer, HttpFrontLimits
from service.counters.owner import CounterOwner
from service.errors import PackError, RedlineError
from service.kafka.preflight import broker_refusal
from service.logs import configure_logging
from service.metrics_merge import MergedRegistry
from service.reload_triggers import reload_logged, watch_rules
from service.runtime import Runtime, run_loop
from service.settings import Settings
from service.stream.members import StreamMembers, member_count
from service.stream.processor import StreamProcessor

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process drains the stream first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run(settings: Settings) -> int:
    configure_logging(settings.log_level)
    if (refusal := exposure_refusal(settings)) is not None:
        print(f"redline serve: {refusal}", file=sys.stderr)
        return 2
    try:
        # First, so a busy port ends the start in milliseconds, before any pack is compiled.
        listener = listen(settings)
    except ListenError as exc:
        print(f"redline serve: {exc}", file=sys.stderr)
        return 2
    if settings.stream_enabled:
        # Before the pack compiles: a refused login or a broker without transactions ends the start
        # in about a second with the broker's own reason, not after seconds of retries in the log.
        refusal = asyncio.run(broker_refusal(settings))
        if refusal is not None:
            listener.close()
            print(f"redline serve: {refusal}", file=sys.stderr)
            return 2
    try:
        runtime = Runtime.load(settings, isolated=True)
    except PackError as exc:
        listener.close()
        print(exc, file=sys.stderr)
        return 2
    # The compiled pack is hundreds of thousands of long-lived objects: move them out of the
    # cyclic collector's sight so full collections don't rescan them under load.
    gc.collect()
    gc.freeze()
    return run_loop(_serve_until_signalled(settings, runtime, listener))


class ListenError(RedlineError):
    """The HTTP address cannot be listened on (taken, not ours, not an address)."""


def listen(settings: Settings) -> socket.socket:
    """The HTTP listening socket, bound now (uvicorn serves on it): a taken port is one clear
    line at start, not a log line followed by a hung process."""
    host, port = settings.http_host, settings.http_port
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror} (REDLINE_HTTP_HOST)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own bind does
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = " (another process holds it: choose another with --port or REDLINE_HTTP_PORT)" \
            if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock


def exposure_refusal(settings: Settings) -> str | None:
    """Why `serve` must not start as configured: open to the network with no keys, unless asked."""
    if settings.api_key_set or settings.http_on_loopback or settings.allow_unauthenticated:
        return None
    return (
        f"REDLINE_HTTP_HOST={settings.http_host} would serve /check to the network without keys: set "
        "REDLINE_API_KEYS (and REDLINE_ADMIN_KEYS to reload over HTTP), or listen on 127.0.0.1, "
        "or set REDLINE_ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates"
    )


async def _serve_until_signalled(settings: Settings, runtime: Runtime, listener: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[None]] = set()

    def on_stop_signal(signum: int) -> None:
        log.info("stop signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    def on_reload_signal() -> None:
        task = asyncio.create_task(_reload_on_signal(runtime))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_reload_signal)
    try:
        return await serve(settings, runtime, stop, listener)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _reload_on_signal(runtime: Runtime) -> None:
    await reload_logged(runtime, "sighup")  # a refused pack is logged; the old one keeps serving


async def serve(settings: Settings, runtime: Runtime, stop: asyncio.Event, listener: socket.socket) -> int:
    """Serve until `stop` is set or a part fails; drain the stream, then stop HTTP."""
    from service.api.app import create_app  # FastAPI is imported only by the processes that serve

    front = GuardedServer(http_front_limits(settings))
    config = uvicorn.Config(
        create_app(runtime), host=settings.http_host, port=settings.http_port,
        log_config=None, access_log=False, lifespan="on", server_header=False,
        http=front.protocol, ws="none", timeout_keep_alive=settings.http_keepalive_timeout_seconds,
    )
    server = _Server(config)
    http_ready = runtime.readiness.part("http", "shutting down")
    http_ready.set(True)
    http = asyncio.create_task(server.serve(sockets=[listener]), name="redline-http")
    stream = _stream(settings, runtime) if settings.stream_enabled else None
    stream_task = asyncio.create_task(stream.run(), name="redline-stream") if stream else None
    # Every replica owns a share of the counter keys (docs/counters.md), whether or not the pack
    # serving now has counters: a reload may bring them, and requests may still be in flight.
    counters = CounterOwner(settings, runtime) if settings.stream_enabled else None
    counters_task = asyncio.create_task(counters.run(), name="redline-counters") if counters else None
    stopper = asyncio.create_task(stop.wait(), name="redline-stop")
    watcher = None
    if settings.rules_watch:
        watcher = asyncio.create_task(
            watch_rules(runtime, poll_seconds=settings.rules_watch_poll_seconds), name="redline-rules-watch"
        )
    parts: set[asyncio.Task[Any]] = {http, stopper} | {t for t in (stream_task, counters_task) if t is not None}
    log.info("serving", extra={"http_port": settings.http_port, "stream": stream is not None})
    await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if not stopper.done():
        log.error("a part of the service stopped unexpectedly; shutting down")
        exit_code = 1
    stopper.cancel()
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    http_ready.set(False)  # /readyz goes false while the stream drains
    if stream is not None and stream_task is not None:
        stream.request_stop()
        # The stream bounds its own drain; the margin covers leaving the group and closing.
        if not await _stopped(stream_task, "stream", settings.drain_timeout_seconds + 15):
            exit_code = 1
    if counters is not None and counters_task is not None:
        # After the stream: its last counter requests are acknowledged; the owner finishes its
        # batch, commits and leaves, and the rest of the requests go to the other owners.
        counters.request_stop()
        if not await _stopped(counters_task, "counter owner", settings.drain_timeout_seconds + 15):
            exit_code = 1
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await http
    log.info("stopped", extra={"exit_code": exit_code})
    return exit_code


def http_front_limits(settings: Settings) -> HttpFrontLimits:
    """The front's limits, with the connection cap kept under the open-files limit: each connection
    is a file descriptor, and running out of them refuses every client with nothing logged."""
    return HttpFrontLimits(
        max_connections=_connection_cap(settings.http_max_connections),
        max_header_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
        header_timeout_seconds=settings.http_header_timeout_seconds,
        body_timeout_seconds=settings.http_body_timeout_seconds,
    )


# File descriptors kept for everything but HTTP connections: Kafka, the pack, logs, children.
_RESERVED_FILES = 128


def _connection_cap(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        cap = max(1, soft - _RESERVED_FILES)
        log.warning(
            "open-files limit below the HTTP connection cap; connections capped lower",
            extra={"open_files_limit": soft, "http_max_connections": wanted, "effective": cap},
        )
        return cap
    return wanted


def _stream(settings: Settings, runtime: Runtime) -> StreamProcessor | StreamMembers:
    """The stream in this process, or `stream_processes` member processes (members.py)."""
    count = member_count(settings)
    if count == 1:
        return StreamProcessor(settings, runtime)
    merged = MergedRegistry(REGISTRY)
    # /metrics adds the members' stream series to this process's.
    runtime.metrics_registry = CollectorRegistry(auto_describe=False)
    runtime.metrics_registry.register(merged)
    return StreamMembers(settings, runtime, count, merged)


async def _stopped(task: asyncio.Task[None], name: str, timeout_seconds: float) -> bool:
    """Wait for a part asked to stop; False (logged) if it overran or failed."""
    done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
    if not done:
        log.error(f"{name} did not stop in time")
        task.cancel()
        return False
    if task.exception() is not None:
        log.error(f"{name} failed", exc_info=task.exception())
        return False
    return True
