"""The restart delays of the classify worker and of the stream processes (pure logic)."""

from __future__ import annotations

from service.stream.worker_process import RestartBackoff


def test_classify_worker_restarts_at_once_then_doubles_from_half_a_second() -> None:
    backoff = RestartBackoff(first=0.0, floor=0.5)
    assert [backoff.next(lived_seconds=1.0) for _ in range(9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next(lived_seconds=60.0) == 0.0  # one that served a minute resets it
    assert backoff.next(lived_seconds=0.0) == 0.5


def test_stream_processes_restart_after_a_second_then_double() -> None:
    backoff = RestartBackoff(first=1.0, floor=1.0)
    assert [backoff.next(lived_seconds=5.0) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next(lived_seconds=61.0) == 1.0
    assert backoff.next(lived_seconds=5.0) == 2.0
