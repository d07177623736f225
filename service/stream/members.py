"""`serve`'s side of its stream members (member.py): start them, watch them, reload, restart, stop.

    StreamMembers(settings, runtime, count, merged)   the stream of this replica when
                                                      `stream_processes` >= 2; `run()` and
                                                      `request_stop()` as StreamProcessor's

- Each member is a full consumer-group member in its own process (member.py); the group spreads the
  partitions over them as over replicas, so delivery, ordering and rebalances are the stream's own
  (docs/stream.md).
- Readiness: this replica's stream is ready while every member reports ready.
- Metrics: each member's status carries a snapshot of its stream families, added into this
  process's `/metrics` by `merged` (metrics_merge.MergedRegistry). A member that ends is retired
  there: its counters stay counted, its gauges go.
- Reloads: a pack this process swapped in is announced to every member, which loads it from the
  same source (a member that refuses it logs why and keeps its pack, as a replica would).
- A member that dies is started again after a backoff (1 s doubling to 30 s, reset after a minute
  of life) and counted in `redline_stream_member_restarts_total`; its uncommitted batches are
  re-processed by whichever member the group gives its partitions to.
- Stop: every member is asked to drain (EOF on its stdin), and killed if it overruns the drain
  budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Final

from service import metrics
from service.metrics_merge import MergedRegistry
from service.runtime import Runtime
from service.settings import Settings
from service.stream.classify_worker import encode_frame, read_frame
from service.stream.worker_client import effective_cpu_count
from service.stream.worker_process import RestartBackoff, close_stdin, kill_process

log = logging.getLogger(__name__)

_STOP_MARGIN_SECONDS: Final = 10.0  # past the drain budget: leaving the group and closing
_READ_LIMIT: Final = 16 * 1024 * 1024  # a status frame is tens of kB


def member_count(settings: Settings) -> int:
    """How many stream processes `serve` runs; 1 means the stream runs in `serve` itself."""
    if settings.stream_processes != "auto":
        return settings.stream_processes
    # Members beyond the partition count would only wait for a rebalance to give them work.
    return max(1, min(int(effective_cpu_count()), settings.topic_partitions))


class StreamMembers:
    def __init__(self, settings: Settings, runtime: Runtime, count: int, merged: MergedRegistry) -> None:
        self.settings = settings
        self.runtime = runtime
        self.count = count
        self._merged = merged
        self._stopping = asyncio.Event()
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._ready: dict[int, bool] = {}
        self.starts = 0  # member processes spawned (tests and logs)

    def request_stop(self) -> None:
        self._stopping.set()
        for process in self._processes.values():
            close_stdin(process)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Until request_stop(): keep `count` members serving; then wait for their drain."""
        log.info("stream members", extra={"members": self.count})
        self.runtime.reload_listeners.append(self._announce_reload)
        try:
            await asyncio.gather(*(self._keep(index) for index in range(self.count)))
        finally:
            self.runtime.reload_listeners.remove(self._announce_reload)

    async def _keep(self, index: int) -> None:
        restarts = RestartBackoff(first=1.0, floor=1.0)  # 1 s, doubling up to 30 s
        while not self.stopping:
            started = time.monotonic()
            code = await self._serve_once(index)
            if self.stopping:
                return
            metrics.stream_member_restarts_total.inc()
            delay = restarts.next(lived_seconds=time.monotonic() - started)
            log.error("stream member ended; starting it again",
                      extra={"member": index, "exit_code": code, "restart_in_seconds": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve_once(self, index: int) -> int | None:
        """Start member `index` and follow it until it exits; its exit code."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.stream.member",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_READ_LIMIT,
        )
        self.starts += 1
        key = (index, process.pid)  # a restarted member starts from zero: a new key in the merge
        self._processes[index] = process
        assert process.stdin is not None
        # Settings go through the pipe, not argv or the environment: they may hold SASL passwords.
        process.stdin.write(encode_frame(("start", self.settings.model_dump(mode="json"), index)))
        if self.stopping:
            close_stdin(process)
        stopper = asyncio.create_task(self._kill_after_stop(process), name=f"redline-member-{index}-stop")
        try:
            assert process.stdout is not None
            while (message := await read_frame(process.stdout)) is not None:
                self._handle(index, key, message)
        except Exception as exc:  # a broken frame: the member is killed and started again
            log.error("stream member broke the protocol; killing it",
                      extra={"member": index, "error": repr(exc)})
            kill_process(process)
        finally:
            self._ready[index] = False
            self._publish_readiness()
            code = await process.wait()
            stopper.cancel()
            self._merged.retire(key)
            if self._processes.get(index) is process:
                del self._processes[index]
        return code

    def _handle(self, index: int, key: tuple[int, int], message: Any) -> None:
        kind = message[0]
        if kind == "status":
            _, ready, snapshot = message
            self._merged.update(key, snapshot)
            if self._ready.get(index) != ready:
                self._ready[index] = ready
                self._publish_readiness()
        elif kind == "ready":
            _, name, version, digest, pid = message
            log.info("stream member started",
                     extra={"member": index, "pid": pid, "pack": name, "version": version, "digest": digest})
        elif kind == "refused":
            log.error("stream member refused the pack", extra={"member": index, "error": message[1]})

    def _publish_readiness(self) -> None:
        ready = (len(self._ready) == self.count and all(self._ready.values()) and not self.stopping)
        if ready != self.runtime.stream_ready:
            self.runtime.stream_ready = ready
            log.info("stream readiness changed", extra={"ready": ready, "members": self.count})

    def _announce_reload(self) -> None:
        for process in self._processes.values():
            stdin = process.stdin
            if stdin is not None and not stdin.is_closing():
                stdin.write(encode_frame(("reload",)))

    async def _kill_after_stop(self, process: asyncio.subprocess.Process) -> None:
        await self._stopping.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), self.settings.drain_timeout_seconds + _STOP_MARGIN_SECONDS)
            return
        log.warning("stream member did not stop in time; killing it", extra={"pid": process.pid})
        kill_process(process)
