"""One classify worker process, as the stream's event loop sees it (the worker is classify_worker.py).

    WorkerProcess     one `python -m service.stream.classify_worker`; `start()` waits for its pack,
                      `submit()` → a future per batch, resolved in submission order; several batches
                      may be in flight; `retire()`/`stop()` end it after it answered what it has
    WorkerError       it died or broke the protocol: its in-flight batches fail (the stream
                      re-processes them from the last commit); PackRefused: it refused the pack

Which worker serves, restarts and reloads: worker_client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from service.errors import RedlineError
from service.events import RulesetRef
from service.settings import Settings
from service.stream.classify_worker import IncompleteFrame, encode_frame, read_frame, to_rows
from service.stream.pipeline import Processed

log = logging.getLogger(__name__)

_STOP_SECONDS: Final = 10.0  # a retired worker answers what it has, then exits; kill it after this
_READ_LIMIT: Final = 64 * 1024 * 1024  # StreamReader pauses the pipe above 2 × limit: above any frame
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
    classify_seconds: float  # engine time of the batch (decode excluded), measured where it ran


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
                kill_process(process)
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
        close_stdin(self.process)

    async def stop(self, timeout_seconds: float = _STOP_SECONDS) -> None:
        self.retire()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_seconds)
        except TimeoutError:
            log.warning("classify worker did not exit in time; killing it", extra={"pid": self.pid})
            kill_process(self.process)
            await self.process.wait()
        await self._reader  # ends once the worker's stdout closed; it never raises but CancelledError

    def kill(self) -> None:
        self._retiring = True
        kill_process(self.process)

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                message = await _read_message(self.process)
                if message is None:
                    break
                seq, processed, seconds = message
                if not self._pending or self._pending[0][0] != seq:
                    raise WorkerError(f"classify worker answered batch {seq} out of order")
                _, future = self._pending.popleft()
                self._progress_at = time.monotonic()
                if not future.done():
                    future.set_result(Classified(processed, self.ruleset, seconds))
        except Exception as exc:  # a broken pipe or frame (any unpickling error): a dead worker
            error = exc
            log.warning("classify worker broke the protocol; killing it",
                        extra={"pid": self.pid, "error": repr(exc)})
            kill_process(self.process)
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
                kill_process(self.process)  # the read loop sees EOF and fails the batches
                return


async def _read_message(process: asyncio.subprocess.Process) -> Any | None:
    """One frame from the worker's stdout; None on a clean EOF between frames."""
    assert process.stdout is not None
    try:
        return await read_frame(process.stdout)
    except IncompleteFrame as exc:
        raise WorkerError(f"classify worker ended: {exc}") from exc


class RestartBackoff:
    """The delay before starting a child process again after one died: `first`, then doubling
    from `floor` up to 30 s while children keep dying; `first` again once one lived a minute."""

    MAX_SECONDS: Final = 30.0
    HEALTHY_SECONDS: Final = 60.0

    def __init__(self, first: float, floor: float) -> None:
        self.first = first
        self.floor = floor
        self._last: float | None = None

    def next(self, lived_seconds: float) -> float:
        if self._last is None or lived_seconds >= self.HEALTHY_SECONDS:
            delay = self.first
        else:
            delay = min(self.MAX_SECONDS, max(self.floor, self._last * 2))
        self._last = delay
        return delay


def close_stdin(process: asyncio.subprocess.Process) -> None:
    """EOF on the child's stdin: the pipe transport flushes what is buffered before it closes."""
    stdin = process.stdin
    if stdin is not None and not stdin.is_closing():
        stdin.close()


def kill_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
