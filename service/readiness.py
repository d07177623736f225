"""Readiness: one object every part of the process reports to, and `/readyz` reads.

    part = readiness.part("stream", "stream not connected to the broker or not in the consumer group")
    part.set(True)                  the part reports; a part starts not ready
    readiness.state()               (ready, the reasons of the parts not ready)

The stream (one process or its members), the counter owner and `serve` (HTTP, and its stop) each
hold a part; a process without a stream holds none of the stream's and is ready with its pack.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ReadinessPart:
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason  # why the process is not ready while this part is not
        self.ready = False

    def set(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            log.info(f"{self.name} readiness changed", extra={"ready": ready})


class Readiness:
    def __init__(self) -> None:
        self._parts: dict[str, ReadinessPart] = {}

    def part(self, name: str, reason: str) -> ReadinessPart:
        """The part called `name` (created not ready the first time it is asked for)."""
        found = self._parts.get(name)
        if found is None:
            found = self._parts[name] = ReadinessPart(name, reason)
        return found

    def state(self) -> tuple[bool, list[str]]:
        reasons = [part.reason for part in self._parts.values() if not part.ready]
        return not reasons, reasons
