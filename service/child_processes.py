"""The one way Redline runs child processes: `python -m <module>` with frames over its pipes,
followed by its parent, started again after a backoff when it must keep running.

    Child.spawn(module, *args)       the parent's side: send() frames to the child's stdin,
                                     receive() frames from its stdout, stop() / kill()
    ChildPipes.open()                the child's side: frames in on stdin, out on a private copy
                                     of stdout (fd 1 then points to stderr, so a stray print of
                                     any library cannot corrupt the frame stream)
    keep_running(run_once, ...)      supervision: run a child until it exits, back off, again
    RestartBackoff                   1 s, doubling to 30 s while children keep dying; 1 s again
                                     once one lived a minute

Users: stream members (service/stream/members.py, member.py) are kept running; the image hasher
(service/api/image_hasher.py) starts its child on demand and replaces it at once when it dies.

A frame is an 8-byte little-endian length and a pickle (protocol 5). Both ends are this package at
the same version, started together, so pickle is safe here: nothing else writes to these pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pickle
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Final

from service.errors import RedlineError

FRAME_HEADER: Final = struct.Struct("<Q")
PICKLE_PROTOCOL: Final = 5
_READ_LIMIT: Final = 16 * 1024 * 1024  # StreamReader pauses the pipe above 2 × limit: above any frame


class IncompleteFrame(RedlineError):
    """The other end closed its pipe inside a frame."""


def encode_frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=PICKLE_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """One frame from a pipe read by an event loop; None on a clean EOF between frames."""
    try:
        header = await reader.readexactly(FRAME_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise IncompleteFrame("the pipe ended inside a frame header") from exc
        return None
    (size,) = FRAME_HEADER.unpack(header)
    try:
        payload = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise IncompleteFrame("the pipe ended inside a frame") from exc
    return pickle.loads(payload)


class Child:
    """A child process as its parent sees it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    @classmethod
    async def spawn(cls, module: str, *args: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_READ_LIMIT,
        )
        return cls(process)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def send(self, message: object) -> None:
        """Queue a frame to the child's stdin (the transport buffers it; callers bound what they send)."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(encode_frame(message))

    async def receive(self) -> Any | None:
        """The child's next frame; None when it closed its stdout (exited) between frames."""
        assert self.process.stdout is not None
        return await read_frame(self.process.stdout)

    def close_stdin(self) -> None:
        """EOF on the child's stdin (it ends): the transport flushes what is buffered first."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, timeout_seconds: float) -> int:
        """EOF on its stdin, then up to `timeout_seconds` for it to exit; killed after that."""
        self.close_stdin()
        try:
            return await asyncio.wait_for(self.process.wait(), timeout_seconds)
        except TimeoutError:
            self.kill()
            return await self.process.wait()


class ChildPipes:
    """The child's side of its pipes: frames in on stdin, out on a private copy of stdout."""

    def __init__(self, requests: BinaryIO, replies: BinaryIO) -> None:
        self.requests = requests
        self.replies = replies

    @classmethod
    def open(cls) -> ChildPipes:
        """Lives as long as the process."""
        replies = open(os.dup(sys.stdout.fileno()), "wb")  # noqa: SIM115
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        return cls(sys.stdin.buffer, replies)

    def write(self, message: object) -> bool:
        """Send a frame to the parent; False when the parent is gone (its pipe closed)."""
        if self.replies.closed:
            return False
        try:
            self.replies.write(encode_frame(message))
            self.replies.flush()
        except BrokenPipeError:  # the parent died: its end of our stdin closes too
            with contextlib.suppress(OSError):
                self.replies.close()
            return False
        return True

    def read(self) -> Any | None:
        """The next frame from the parent, blocking; None on EOF (the parent closed our stdin or died)."""
        header = self.requests.read(FRAME_HEADER.size)
        if len(header) < FRAME_HEADER.size:
            return None
        (size,) = FRAME_HEADER.unpack(header)
        payload = _read_exactly(self.requests, size)
        return None if payload is None else pickle.loads(payload)

    async def reader(self) -> asyncio.StreamReader:
        """Stdin for a child that runs an event loop: read it with `read_frame`."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self.requests)
        return reader


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    buffer = io.BytesIO()
    while buffer.tell() < size:
        chunk = stream.read(size - buffer.tell())
        if not chunk:
            return None
        buffer.write(chunk)
    return buffer.getvalue()


class RestartBackoff:
    """The delay before starting a child again after one died: `first_seconds`, then doubling up
    to `MAX_SECONDS` while children keep dying; `first_seconds` again once one lived a minute."""

    MAX_SECONDS: Final = 30.0
    HEALTHY_SECONDS: Final = 60.0

    def __init__(self, first_seconds: float = 1.0) -> None:
        self.first_seconds = first_seconds
        self._last: float | None = None

    def next(self, lived_seconds: float) -> float:
        if self._last is None or lived_seconds >= self.HEALTHY_SECONDS:
            delay = self.first_seconds
        else:
            delay = min(self.MAX_SECONDS, self._last * 2)
        self._last = delay
        return delay


async def keep_running(
    run_once: Callable[[], Awaitable[int | None]],
    stop: asyncio.Event,
    on_restart: Callable[[int | None, float], None],
    backoff: RestartBackoff | None = None,
) -> None:
    """Until `stop` is set: `run_once()` (start a child, follow it until it exits: its exit code),
    then `on_restart(code, delay)` and a backoff before the next start."""
    backoff = backoff or RestartBackoff()
    while not stop.is_set():
        started = time.monotonic()
        code = await run_once()
        if stop.is_set():
            return
        delay = backoff.next(lived_seconds=time.monotonic() - started)
        on_restart(code, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
