"""The stream's side of the classify worker (classify_worker.py): one worker process, and which one serves.

    WorkerProcess     one `python -m service.stream.classify_worker`; submit() → a future per batch,
                      resolved in submission order; several batches may be in flight
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
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from service import metrics
from service.errors import RedlineError
from service.events import RulesetRef
from service.settings import Settings
from service.stream.classify_worker import (
    FRAME_HEADER,
    decode_payload,
    encode_frame,
    to_rows,
)
from service.stream.pipeline import Processed
from service.verdict_counts import VerdictCounts

log = logging.getLogger(__name__)

_STOP_SECONDS: Final = 10.0  # a retired worker answers what it has, then exits; kill it after this
_READ_LIMIT: Final = 64 * 1024 * 1024  # StreamReader pauses the pipe above 2 × limit: above any frame
_RESTART_MAX_SECONDS: Final = 30.0
_HEALTHY_SECONDS: Final = 60.0  # a worker that lived this long resets the restart backoff
# No answer for this long while batches wait: the worker hangs; it is killed (its batches fail and
# are re-processed). A batch is at most fetch_max_bytes (~50 MB) of text at ~0.15 µs per character.
_ANSWER_TIMEOUT_SECONDS: Final = 120.0


class WorkerError(RedlineError):
    """The classify worker died or broke the protocol; its in-flight batches have no result."""


class PackRefused(WorkerError):
    """The worker refused the pack (it changed on disk after the runtime loaded it)."""


@dataclass(slots=True)
class Classified:
    """One batch's outputs and what the edges count about it."""

    processed: Processed
    ruleset: RulesetRef  # the pack that decided every verdict of the batch
    tally: VerdictCounts
    classify_seconds: float  # engine time of the batch (decode excluded), measured where it ran


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


class WorkerProcess:
    def __init__(self, process: asyncio.subprocess.Process, ruleset: RulesetRef,
                 answer_timeout_seconds: float = _ANSWER_TIMEOUT_SECONDS) -> None:
        self.process = process
        self.answer_timeout_seconds = answer_timeout_seconds
        self.ruleset = ruleset
        self.pid = process.pid
        self.ready_at = time.monotonic()
        self._pending: deque[tuple[int, asyncio.Future[Classified]]] = deque()
        self._seq = 0
        self._alive = True
        self._retiring = False
        self.finished = asyncio.Event()  # the read loop ended: every pending batch was answered or failed
        self._progress_at = time.monotonic()  # last answer, or the submit that ended an idle spell
        self._reader = asyncio.create_task(self._read_loop(), name=f"redline-classify-worker-{self.pid}")
        self._watchdog = asyncio.create_task(self._watch_answers(), name=f"redline-classify-watchdog-{self.pid}")

    @classmethod
    async def start(cls, settings: Settings, answer_timeout_seconds: float = _ANSWER_TIMEOUT_SECONDS) -> WorkerProcess:
        """Spawn a worker and wait for its pack; WorkerError if it refuses the pack or dies first."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.stream.classify_worker",
            "--rules", str(settings.rules), "--max-record-bytes", str(settings.max_record_bytes),
            "--dead-letter-max-value-bytes", str(settings.dead_letter_max_value_bytes),
            "--log-level", settings.log_level,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_READ_LIMIT,
        )
        hello = None
        try:
            hello = await _read_message(process)
        finally:
            if hello is None or hello[0] != "ready":  # refused, died, or cancelled while it loaded
                _kill(process)
                await process.wait()
        if hello is None or hello[0] != "ready":
            if hello is None:
                raise WorkerError(f"classify worker exited before it was ready (code {process.returncode})")
            raise PackRefused(f"classify worker not started: {hello[1]}")
        _, name, version, digest, _pid = hello
        return cls(process, RulesetRef(name=name, version=version, digest=digest), answer_timeout_seconds)

    @property
    def alive(self) -> bool:
        return self._alive and not self._retiring

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, records: Iterable[Any]) -> asyncio.Future[Classified]:
        """Queue one batch; its future resolves after every batch submitted before it."""
        if not self.alive:
            raise WorkerError("classify worker is not serving")
        stdin = self.process.stdin
        assert stdin is not None
        self._seq += 1
        future: asyncio.Future[Classified] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._progress_at = time.monotonic()
        self._pending.append((self._seq, future))
        # No drain(): the stream bounds the batches in flight (max_in_flight_batches), hence the buffer.
        stdin.write(encode_frame((self._seq, to_rows(records))))
        return future

    def retire(self) -> None:
        """Take no new batches; answer the queued ones, then exit (EOF on the worker's stdin)."""
        if self._retiring:
            return
        self._retiring = True
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()  # the pipe transport flushes what is buffered before it closes

    async def stop(self, timeout_seconds: float = _STOP_SECONDS) -> None:
        self.retire()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_seconds)
        except TimeoutError:
            log.warning("classify worker did not exit in time; killing it", extra={"pid": self.pid})
            _kill(self.process)
            await self.process.wait()
        await self._reader  # ends once the worker's stdout closed; it never raises but CancelledError

    def kill(self) -> None:
        self._retiring = True
        _kill(self.process)

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                message = await _read_message(self.process)
                if message is None:
                    break
                seq, processed, tally, seconds = message
                if not self._pending or self._pending[0][0] != seq:
                    raise WorkerError(f"classify worker answered batch {seq} out of order")
                _, future = self._pending.popleft()
                self._progress_at = time.monotonic()
                if not future.done():
                    future.set_result(Classified(processed, self.ruleset, tally, seconds))
        except Exception as exc:  # a broken pipe or frame (any unpickling error): a dead worker
            error = exc
            log.warning("classify worker broke the protocol; killing it",
                        extra={"pid": self.pid, "error": repr(exc)})
            _kill(self.process)
        finally:
            self._alive = False
            if self._pending:
                failure = WorkerError(f"classify worker {self.pid} ended with {len(self._pending)} batch(es) "
                                      f"unanswered" + (f": {error!r}" if error else ""))
                while self._pending:
                    _, future = self._pending.popleft()
                    if not future.done():
                        future.set_exception(failure)
                        future.exception()  # the stream reads it in order; never "never retrieved"
            self._watchdog.cancel()
            self.finished.set()

    async def _watch_answers(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._pending and time.monotonic() - self._progress_at > self.answer_timeout_seconds:
                log.warning("classify worker stopped answering; killing it",
                            extra={"pid": self.pid, "batches": len(self._pending)})
                _kill(self.process)  # the read loop sees EOF and fails the batches
                return


async def _read_message(process: asyncio.subprocess.Process) -> Any | None:
    """One frame from the worker's stdout; None on a clean EOF between frames."""
    stdout = process.stdout
    assert stdout is not None
    try:
        header = await stdout.readexactly(FRAME_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise WorkerError("classify worker ended inside a frame header") from exc
        return None
    (size,) = FRAME_HEADER.unpack(header)
    try:
        payload = await stdout.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise WorkerError("classify worker ended inside a frame") from exc
    return decode_payload(payload)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class ClassifyWorkers:
    """Which worker classifies the stream's batches now (module docstring)."""

    def __init__(self, settings: Settings, serving_digest: str) -> None:
        self.settings = settings
        self._serving_digest = serving_digest  # the runtime's, as last seen by sync()
        self._current: WorkerProcess | None = None
        self._starting: asyncio.Task[None] | None = None
        self._retired: set[WorkerProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart_delay = 0.0
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
        self._current = None
        metrics.stream_classify_worker_up.set(0)
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
            delay = self._next_restart_delay(lived_seconds=0.0)
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
        previous, self._current = self._current, worker
        metrics.stream_classify_worker_up.set(1)
        self._watch(worker)
        log.info("classify worker ready",
                 extra={"pid": worker.pid, "pack": worker.ruleset.name, "version": worker.ruleset.version,
                        "digest": worker.ruleset.digest, "seconds": round(time.perf_counter() - started, 3)})
        if previous is not None:
            self._retire(previous)

    def _drop_stale_current(self) -> None:
        current = self._current
        if current is not None and current.ruleset.digest != self._serving_digest:
            self._current = None
            metrics.stream_classify_worker_up.set(0)
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
        self._current = None
        metrics.stream_classify_worker_up.set(0)
        metrics.stream_classify_worker_failures_total.labels("serving").inc()
        delay = self._next_restart_delay(lived_seconds=time.monotonic() - worker.ready_at)
        log.warning("classify worker died; restarting it, classifying in-process meanwhile",
                    extra={"pid": worker.pid, "exit_code": worker.process.returncode,
                           "retry_in_seconds": delay})
        self._retire(worker)  # reaps the process
        if self._starting is None:
            self._start(delay)

    def _next_restart_delay(self, lived_seconds: float) -> float:
        """0 after a worker that served a while; then doubling from 0.5 s up to 30 s."""
        if lived_seconds >= _HEALTHY_SECONDS:
            self._restart_delay = 0.0
        delay = self._restart_delay
        self._restart_delay = min(_RESTART_MAX_SECONDS, max(0.5, self._restart_delay * 2))
        return delay
