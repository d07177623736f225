"""A stream member: a child process of `redline serve` that runs one full stream consumer.

    python -m service.stream.member        (started by members.py, never by hand)

When `stream_processes` is 2 or more, `serve` keeps HTTP (and the counter owner) in its own process
and starts this many members. Each member is an ordinary member of the consumer group, exactly like
another replica: it loads the pack, consumes its share of the partitions, classifies, produces and
commits on its own. Nothing crosses between the members and the parent but control and metrics, so
one event's cost is the stream's alone (docs/benchmarks.md).

Wire protocol (frames of service.child_processes: 8-byte length + pickle; both ends this package):

    parent → member   ("start", settings, index, pack)   once, first: the parent's settings as JSON
                                                   data and its compiled pack, pickled (None: the
                                                   member compiles the pack itself)
                      ("reload", pack)             the parent's new pack (None: load it again here)
                      EOF                          drain, commit, leave the group, exit 0
    member → parent   ("ready", name, version, digest, pid)     the pack is loaded
                      ("refused", message)                      the pack failed; exit 2
                      ("status", ready, metrics)                 every STATUS_SECONDS and once more
                                                                after the drain, before exit

`metrics` is a metrics_merge snapshot of the stream's families: the parent adds it into its own
`/metrics`, so a scrape shows one process's worth of series whatever the member count.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY

from service import metrics
from service.child_processes import ChildPipes, IncompleteFrame, read_frame
from service.errors import PackError
from service.metrics_merge import family_names, take_snapshot

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.stream.processor import StreamProcessor

log = logging.getLogger(__name__)

STATUS_SECONDS: Final = 0.5  # metrics and readiness reach the parent at most this late

# What a member counts: the stream's families, and its CPU and memory (a replica's process panels
# and alerts then cover all its processes, as a container's metrics would). The pack's own series
# (info, reload results) and HTTP's are the parent's; the parent pre-initialises every label set.
MEMBER_FAMILIES: Final = frozenset({"process_cpu_seconds", "process_resident_memory_bytes"}) | family_names(
    metrics.events_consumed_total,
    metrics.events_classified_total,
    metrics.events_dead_lettered_total,
    metrics.verdicts_total,
    metrics.category_matches_total,
    metrics.rule_matches_total,
    metrics.classify_duration_seconds,
    metrics.end_to_end_lag_seconds,
    metrics.stream_assigned_partitions,
    metrics.stream_consumer_lag_records,
    metrics.stream_in_flight_batches,
    metrics.stream_commits_total,
    metrics.stream_produce_failures_total,
)


class _Member(logging.Filter):
    """Tags every log line of this process with its member index."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.stream_member = self.index
        return True


async def _command(reader: asyncio.StreamReader) -> Any | None:
    try:
        return await read_frame(reader)
    except IncompleteFrame:
        return None  # the parent died mid-frame: as EOF, stop


async def _run(pipes: ChildPipes) -> int:
    from service.logs import configure_logging
    from service.runtime import Runtime
    from service.settings import Settings
    from service.stream.processor import StreamProcessor

    reader = await pipes.reader()
    start = await _command(reader)
    if start is None or start[0] != "start":
        return 1
    _, data, index, pack_bytes = start
    # This process is one consumer; reloads come from the parent only.
    settings = Settings(**{**data, "stream_processes": 1, "rules_watch": False})
    configure_logging(settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Member(index))
    try:
        # The parent's compiled pack when it sent one (serve does): ~0.2 s, and no second compile;
        # else compiled here (nothing else runs yet: no thread needed).
        runtime = Runtime.adopting(settings, pack_bytes) if pack_bytes is not None else Runtime.load(settings)
    except PackError as exc:
        pipes.write(("refused", str(exc)))
        return 2
    gc.collect()
    gc.freeze()  # as `serve` does: the compiled pack stays out of the cyclic collector's scans
    ruleset = runtime.engine.ruleset
    pipes.write(("ready", ruleset.name, ruleset.version, ruleset.digest, os.getpid()))

    stream = StreamProcessor(settings, runtime)
    ready = runtime.readiness

    def status() -> None:
        snapshot = take_snapshot(REGISTRY, MEMBER_FAMILIES)
        pipes.write(("status", ready.state()[0], snapshot))

    stream_task = asyncio.create_task(stream.run(), name="redline-stream")
    commands = asyncio.create_task(_obey(reader, runtime, stream), name="redline-member-commands")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stream.request_stop)  # stopped alone: drains like on EOF
    try:
        while not stream_task.done():
            await asyncio.wait({stream_task}, timeout=STATUS_SECONDS)
            # The last one, sent once the stream ended, carries the drained batches' counts
            # before the parent retires this member.
            status()
    finally:
        commands.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await commands
    if stream_task.exception() is not None:
        log.error("stream failed", exc_info=stream_task.exception())
        return 1
    return 0


async def _obey(reader: asyncio.StreamReader, runtime: Runtime, stream: StreamProcessor) -> None:
    from service.reload_triggers import reload_logged

    while (command := await _command(reader)) is not None:
        if command[0] == "reload":
            if command[1] is not None:
                runtime.adopt(command[1])  # the parent compiled and checked it
            else:
                await reload_logged(runtime, "parent")  # a refused pack is logged; the old one serves
    stream.request_stop()


def main() -> int:
    # A terminal's ^C reaches the whole process group: the parent drains its members in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from service.runtime import run_loop

    return run_loop(_run(ChildPipes.open()))


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy (its classes are the ones pickled).
    from service.stream import member

    sys.exit(member.main())
