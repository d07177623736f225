"""Reload triggers besides `POST /rules/reload`: SIGHUP (`serve`), the parent's word (a stream
member), and changes in the pack directory (`rules_watch`).

All call `runtime.reload()`, which serialises reloads, keeps the old pack on `PackError` and
logs the outcome; here a refused pack is logged once more with its issues (files and lines, no
message bodies) and never stops the trigger.

The watcher polls a fingerprint of the directory (relative path, size, mtime of every file): no
dependency, works on every filesystem (including the symlink swaps of a Kubernetes ConfigMap), and
reloads only once the fingerprint has held still for one poll, so a half-copied pack is not loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from service.errors import PackError
from service.runtime import Runtime

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]

async def reload_logged(runtime: Runtime, trigger: str) -> bool:
    """Reload; True when the new pack serves. A refused pack is logged, never raised."""
    try:
        await runtime.reload()
    except PackError as exc:
        log.warning(
            "rule pack refused, old pack keeps serving",
            extra={"trigger": trigger, "issues": [str(issue) for issue in exc.issues]},
        )
        return False
    except (OSError, RuntimeError, ValueError) as exc:
        # The loader should turn every pack problem into PackError; if it did not, keep serving.
        log.error("rule pack reload failed", extra={"trigger": trigger}, exc_info=exc)
        return False
    return True


def fingerprint(directory: Path) -> Fingerprint:
    entries: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:  # removed between listing and stat: the next poll sees it
                continue
            entries.append((os.path.relpath(path, directory), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


async def watch_rules(runtime: Runtime, *, poll_seconds: float) -> None:
    """Reload whenever the pack directory changes; runs until cancelled."""
    directory = runtime.rules_dir
    # Taken before the first await: a change made once this task has started is never missed.
    loaded = fingerprint(directory)
    seen = loaded
    log.info("watching rule pack directory", extra={"directory": str(directory), "poll_seconds": poll_seconds})
    while True:
        await asyncio.sleep(poll_seconds)
        current = await asyncio.to_thread(fingerprint, directory)
        if current != seen:
            seen = current  # still changing: wait until it holds still for one poll
            continue
        if current != loaded:
            loaded = current  # a refused pack is not retried until the directory changes again
            await reload_logged(runtime, "watch")
