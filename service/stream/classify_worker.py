"""The classify worker: a subprocess that runs `decode_records` + `classify_decoded` on its own engine.

    python -m service.stream.classify_worker --rules DIR [--max-record-bytes N] ...

The stream's event loop then does only Kafka I/O while this process classifies, so the two
overlap on two cores (docs/stream.md, *Classify worker*). The parent's side: `worker_process.py`
(one worker) and `worker_client.py` (which one serves).

Wire protocol, over the worker's stdin (requests) and stdout (replies): frames of an 8-byte
little-endian length and a pickle (protocol 5). Both ends are this package at the same version,
started together, so pickle is safe here: nothing else writes to these pipes.

    worker → parent   ("ready", name, version, digest, pid)   once the pack is loaded and tested
                      ("refused", message)                     the pack failed; the worker exits 1
    parent → worker   (seq, rows)       rows: (topic, partition, offset, timestamp, key, value, headers)
    worker → parent   (seq, processed, classify_seconds)   one reply per request, in order

`processed` is the batch's `Processed`: encoded records and a tally of the verdicts, never the
Verdict structs (pickling those with their matches cost ~2 µs per event each side; a tally is a
few dictionaries per batch). The worker ends on EOF of its stdin, after answering all it read.
"""

from __future__ import annotations

import argparse
import asyncio
import copyreg
import fcntl
import gc
import io
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple

from service.errors import PackError, RedlineError
from service.stream.dead_letters import DeadLetter
from service.stream.pipeline import CounterRecord, Processed, VerdictRecord, classify_decoded, decode_records

FRAME_HEADER: Final = struct.Struct("<Q")
PICKLE_PROTOCOL: Final = 5
PIPE_BYTES: Final = 4 * 1024 * 1024

Row = tuple[str, int, int, int, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


class WireRecord(NamedTuple):
    """A consumed record as the worker sees it: what `pipeline.SourceRecord` reads, nothing more."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def to_rows(records: Iterable[Any]) -> list[Row]:
    """aiokafka ConsumerRecords → plain tuples (pickling the records themselves costs ~4×)."""
    return [(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers) for r in records]


# --- framing

# Frozen slots dataclasses pickle through __getstate__/__setstate__ (~1.5 µs each way per record);
# a constructor call with positional arguments costs a third of that.
_DISPATCH: Final = copyreg.dispatch_table.copy()
_DISPATCH[VerdictRecord] = lambda r: (VerdictRecord, tuple(r))  # a NamedTuple's default reduce is ~4× slower
_DISPATCH[DeadLetter] = lambda d: (DeadLetter, (d.key, d.value, d.headers, d.reason, d.source_partition))
_DISPATCH[CounterRecord] = lambda c: (CounterRecord, (c.key, c.value))


def encode_frame(message: object) -> bytes:
    buffer = io.BytesIO()
    buffer.write(bytes(FRAME_HEADER.size))
    pickler = pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(message)
    size = buffer.tell() - FRAME_HEADER.size
    buffer.seek(0)
    buffer.write(FRAME_HEADER.pack(size))
    return buffer.getvalue()


def decode_payload(payload: bytes) -> Any:
    return pickle.loads(payload)


class IncompleteFrame(RedlineError):
    """The other end closed its pipe inside a frame."""


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
    return decode_payload(payload)


def _read_frame(stream: BinaryIO) -> Any | None:
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None  # EOF: the parent closed our stdin (or died)
    (size,) = FRAME_HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return decode_payload(payload)


# --- the worker process

def classify_rows(
    engine: Any, rows: list[Row], *, max_record_bytes: int, dead_letter_max_value_bytes: int
) -> tuple[Processed, float]:
    """One batch, exactly as the in-process stream does it (pipeline.py), plus what crosses back."""
    records = list(map(WireRecord._make, rows))
    decoded = decode_records(
        records, max_record_bytes=max_record_bytes, dead_letter_max_value_bytes=dead_letter_max_value_bytes
    )
    started = time.perf_counter()
    processed = classify_decoded(
        engine, decoded, datetime.now(UTC), dead_letter_max_value_bytes=dead_letter_max_value_bytes
    )
    seconds = time.perf_counter() - started
    return processed, seconds


def serve(args: argparse.Namespace, requests: BinaryIO, replies: BinaryIO) -> int:
    from service.logs import configure_logging
    from service.rules.loader import load_pack

    configure_logging(args.log_level)
    try:
        engine = load_pack(args.rules)
    except PackError as exc:
        replies.write(encode_frame(("refused", str(exc))))
        replies.flush()
        return 1
    gc.collect()
    gc.freeze()  # as `serve` does: the compiled pack stays out of the cyclic collector's scans
    ruleset = engine.ruleset
    replies.write(encode_frame(("ready", ruleset.name, ruleset.version, ruleset.digest, os.getpid())))
    replies.flush()
    while (request := _read_frame(requests)) is not None:
        seq, rows = request
        processed, seconds = classify_rows(
            engine, rows, max_record_bytes=args.max_record_bytes,
            dead_letter_max_value_bytes=args.dead_letter_max_value_bytes,
        )
        try:
            replies.write(encode_frame((seq, processed, seconds)))
            replies.flush()
        except BrokenPipeError:
            return 0  # the parent is gone: nobody to answer
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redline classify worker (started by `redline serve`).")
    parser.add_argument("--rules", type=Path, required=True)
    parser.add_argument("--max-record-bytes", type=int, required=True)
    parser.add_argument("--dead-letter-max-value-bytes", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # The parent ends this process by closing its stdin once its stream drained; a terminal's ^C or a
    # signal to the whole process group must not kill batches the parent is still waiting for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = private_stdout(buffering=1 << 20)
    requests = open(sys.stdin.fileno(), "rb", buffering=1 << 20, closefd=False)  # noqa: SIM115
    for stream in (requests, replies):
        _widen_pipe(stream.fileno())
    return serve(args, requests, replies)


def private_stdout(buffering: int = -1) -> BinaryIO:
    """Frames to the parent go to a private copy of stdout; fd 1 then points to stderr, so that a
    stray print of any library cannot corrupt the frame stream. Lives as long as the process."""
    replies = open(os.dup(sys.stdout.fileno()), "wb", buffering=buffering)  # noqa: SIM115
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return replies


def _widen_pipe(fd: int) -> None:
    """A batch is ~0.3–1 MB each way; the default 64 KiB pipe splits it into a dozen wake-ups of
    both processes. Up to /proc/sys/fs/pipe-max-size (1 MiB by default) is allowed unprivileged."""
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(limit, PIPE_BYTES))
    except (OSError, ValueError, AttributeError):
        pass  # not Linux, or not a pipe: correct, only slower


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy: the classes pickled to the parent must be
    # `service.stream.classify_worker.*`, which the parent can resolve.
    from service.stream import classify_worker

    sys.exit(classify_worker.main())
