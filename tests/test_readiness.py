"""Readiness: every part reports; the process is ready when all are, with the reasons of those
that are not."""

from __future__ import annotations

from service.readiness import Readiness


def test_ready_only_when_every_part_is() -> None:
    readiness = Readiness()
    assert readiness.state() == (True, [])  # no part: the pack is loaded, nothing else runs
    stream = readiness.part("stream", "stream not in its group")
    counters = readiness.part("counters", "counter owner not in its group")
    assert readiness.state() == (False, ["stream not in its group", "counter owner not in its group"])
    stream.set(True)
    assert readiness.state() == (False, ["counter owner not in its group"])
    counters.set(True)
    assert readiness.state() == (True, [])
    assert readiness.part("stream", "ignored: the part exists") is stream
    stream.set(False)
    assert readiness.state() == (False, ["stream not in its group"])
