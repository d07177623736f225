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
- A member that dies is started again after a backoff (service.child_processes.keep_running: 1 s
  doubling to 30 s, reset after a minute of life) and counted in
  `redline_stream_member_restarts_total`; its uncommitted batches are re-processed by whichever
  member the group gives its partitions to.
- Stop: every member is asked to drain (EOF on its stdin), and killed if it overruns the drain
  budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Final

from service import metrics
from service.child_processes import Child, keep_running
from service.metrics_merge import MergedRegistry
from service.runtime import Runtime
from service.settings import Settings
from service.stream.processor import NOT_READY

log = logging.getLogger(__name__)

_STOP_MARGIN_SECONDS: Final = 10.0  # past the drain budget: leaving the group and closing


def member_count(settings: Settings) -> int:
    """How many stream processes `serve` runs; 1 means the stream runs in `serve` itself."""
    if settings.stream_processes != "auto":
        return settings.stream_processes
    # Members beyond the partition count would only wait for a rebalance to give them work.
    return max(1, min(int(effective_cpu_count()), settings.topic_partitions))


def effective_cpu_count() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's CPU limit)."""
    count: float = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # cgroup v2
        if quota != "max":
            count = min(count, int(quota) / int(period))
    with contextlib.suppress(OSError, ValueError):
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())  # cgroup v1
        if quota_us > 0:
            count = min(count, quota_us / int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text()))
    return count


class StreamMembers:
    def __init__(self, settings: Settings, runtime: Runtime, count: int, merged: MergedRegistry) -> None:
        self.settings = settings
        self.runtime = runtime
        self.count = count
        self._merged = merged
        self._readiness = runtime.readiness.part("stream", NOT_READY)
        self._stopping = asyncio.Event()
        self._children: dict[int, Child] = {}
        self._ready: dict[int, bool] = {}
        self.starts = 0  # member processes spawned (tests and logs)

    def request_stop(self) -> None:
        self._stopping.set()
        self._readiness.set(False)
        for child in self._children.values():
            child.close_stdin()

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
        def restarting(code: int | None, delay: float) -> None:
            metrics.stream_member_restarts_total.inc()
            log.error("stream member ended; starting it again",
                      extra={"member": index, "exit_code": code, "restart_in_seconds": delay})

        await keep_running(lambda: self._serve_once(index), self._stopping, restarting)

    async def _serve_once(self, index: int) -> int | None:
        """Start member `index` and follow it until it exits; its exit code."""
        child = await Child.spawn("service.stream.member")
        self.starts += 1
        key = (index, child.pid)  # a restarted member starts from zero: a new key in the merge
        self._children[index] = child
        # Settings go through the pipe, not argv or the environment: they may hold SASL passwords.
        # The compiled pack goes too: the member adopts it instead of compiling it again.
        child.send(("start", self.settings.model_dump(mode="json"), index, self.runtime.pack_bytes))
        if self.stopping:
            child.close_stdin()
        stopper = asyncio.create_task(self._kill_after_stop(child), name=f"redline-member-{index}-stop")
        try:
            while (message := await child.receive()) is not None:
                self._handle(index, key, message)
        except Exception as exc:  # a broken frame: the member is killed and started again
            log.error("stream member broke the protocol; killing it",
                      extra={"member": index, "error": repr(exc)})
            child.kill()
        finally:
            self._ready[index] = False
            self._publish_readiness()
            code = await child.wait()
            stopper.cancel()
            self._merged.retire(key)
            if self._children.get(index) is child:
                del self._children[index]
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
        self._readiness.set(len(self._ready) == self.count and all(self._ready.values()) and not self.stopping)

    def _announce_reload(self) -> None:
        for child in self._children.values():
            child.send(("reload", self.runtime.pack_bytes))

    async def _kill_after_stop(self, child: Child) -> None:
        await self._stopping.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), self.settings.drain_timeout_seconds + _STOP_MARGIN_SECONDS)
            return
        log.warning("stream member did not stop in time; killing it", extra={"pid": child.pid})
        child.kill()
