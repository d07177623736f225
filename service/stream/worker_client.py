"""The stream's side of the classify worker (classify_worker.py): which worker process serves.

    (One worker process: worker_process.py.)

    ClassifyWorkers   the worker that classifies now, and its lifecycle:
                      - started for the runtime's pack; serves once it answered "ready" with the
                        digest the runtime serves at that moment;
                      - `sync()` (per batch, and from the stream's probe loop) notices a reload (the
                        runtime's digest changed): the old worker takes no more batches, answers
                        what it has and exits; a new one is started for the new pack;
                      - a worker that dies fails its in-flight batches (`WorkerError`: the stream
                        re-processes them from the last commit) and a new one is started, with backoff;
                      - `current()` is None while no worker with the runtime's pack is ready: the
                        stream then classifies in its own process with the runtime's engine, so a
                        compile or a restart never stalls it, the stream follows a reload as soon
                        as the runtime swapped (as HTTP does), and every batch is decided by one pack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from service import metrics
from service.settings import Settings
from service.stream.worker_process import PackRefused, RestartBackoff, WorkerError, WorkerProcess

log = logging.getLogger(__name__)



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


def worker_enabled(settings: Settings) -> bool:
    mode = settings.stream_classify_worker
    if mode == "auto":
        return effective_cpu_count() >= 2
    return mode == "on"


class ClassifyWorkers:
    """Which worker classifies the stream's batches now (module docstring)."""

    def __init__(self, settings: Settings, serving_digest: str) -> None:
        self.settings = settings
        self._serving_digest = serving_digest  # the runtime's, as last seen by sync()
        self._current: WorkerProcess | None = None
        self._starting: asyncio.Task[None] | None = None
        self._retired: set[WorkerProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # At once after a worker that served a while; then doubling from 0.5 s up to 30 s.
        self._restarts = RestartBackoff(first=0.0, floor=0.5)
        self._closed = False
        self.starts = 0  # workers spawned (tests and logs)

    def open(self) -> None:
        self._start(delay=0.0)

    @property
    def starting(self) -> bool:
        return self._starting is not None

    def current(self) -> WorkerProcess | None:
        worker = self._current
        if worker is not None and not worker.alive:
            self._on_death(worker)
            return None
        return worker

    def sync(self, serving_digest: str) -> None:
        """The runtime serves `serving_digest`: if that is new (a reload), retire the worker of the
        old pack and start one for the new pack."""
        if serving_digest == self._serving_digest or self._closed:
            return
        self._serving_digest = serving_digest
        self._drop_stale_current()
        if self._current is None:
            self._start(delay=0.0)

    async def close(self) -> None:
        """Stop every worker: each answers what it was sent (the stream drained before), then exits."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        workers = [w for w in (self._current, *self._retired) if w is not None]
        self._serve(None)
        self._retired.clear()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    # --- lifecycle

    def _start(self, delay: float) -> None:
        if self._starting is not None:
            self._starting.cancel()  # an older start would load an older pack: the newest wins
        task = asyncio.create_task(self._start_worker(delay), name="redline-classify-worker-start")
        self._starting = task
        self._track(task)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_worker(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        self.starts += 1
        started = time.perf_counter()
        try:
            worker = await WorkerProcess.start(self.settings)
        except PackRefused as exc:  # the same pack would be refused again: wait for a reload
            metrics.stream_classify_worker_failures_total.labels("start").inc()
            log.warning("classify worker refused the pack; classifying in-process", extra={"error": str(exc)})
            return
        except (WorkerError, OSError) as exc:
            metrics.stream_classify_worker_failures_total.labels("start").inc()
            delay = self._restarts.next(lived_seconds=0.0)
            log.warning("classify worker failed to start; classifying in-process, retrying",
                        extra={"error": repr(exc), "retry_in_seconds": delay})
            if self._starting is asyncio.current_task():
                self._starting = None  # the retry replaces this start; it must not cancel it
            if not self._closed:
                self._start(delay)
            return
        finally:
            if self._starting is asyncio.current_task():
                self._starting = None
        if self._closed:
            await worker.stop()
            return
        if worker.ruleset.digest != self._serving_digest:
            # The pack directory changed between the runtime's load and ours: serve the runtime's
            # pack in-process rather than a different one; the next reload starts a new worker.
            log.warning("classify worker loaded another pack than the one serving; classifying in-process",
                        extra={"worker_digest": worker.ruleset.digest, "serving_digest": self._serving_digest})
            self._retire(worker)
            return
        previous = self._current
        self._serve(worker)
        self._watch(worker)
        log.info("classify worker ready",
                 extra={"pid": worker.pid, "pack": worker.ruleset.name, "version": worker.ruleset.version,
                        "digest": worker.ruleset.digest, "seconds": round(time.perf_counter() - started, 3)})
        if previous is not None:
            self._retire(previous)

    def _serve(self, worker: WorkerProcess | None) -> None:
        """The worker that classifies from now on (None: this process); the up gauge follows it."""
        self._current = worker
        metrics.stream_classify_worker_up.set(0 if worker is None else 1)

    def _drop_stale_current(self) -> None:
        current = self._current
        if current is not None and current.ruleset.digest != self._serving_digest:
            self._serve(None)
            self._retire(current)

    def _retire(self, worker: WorkerProcess) -> None:
        worker.retire()
        self._retired.add(worker)
        task = asyncio.create_task(self._reap(worker), name=f"redline-classify-worker-reap-{worker.pid}")
        self._track(task)

    async def _reap(self, worker: WorkerProcess) -> None:
        try:
            await worker.stop()
        finally:
            self._retired.discard(worker)

    def _watch(self, worker: WorkerProcess) -> None:
        async def watch() -> None:
            await worker.finished.wait()
            if self._current is worker:
                self._on_death(worker)

        self._track(asyncio.create_task(watch(), name=f"redline-classify-worker-watch-{worker.pid}"))

    def _on_death(self, worker: WorkerProcess) -> None:
        if self._current is not worker or self._closed:
            return
        self._serve(None)
        metrics.stream_classify_worker_failures_total.labels("serving").inc()
        delay = self._restarts.next(lived_seconds=time.monotonic() - worker.ready_at)
        log.warning("classify worker died; restarting it, classifying in-process meanwhile",
                    extra={"pid": worker.pid, "exit_code": worker.process.returncode,
                           "retry_in_seconds": delay})
        self._retire(worker)  # reaps the process
        if self._starting is None:
            self._start(delay)
