"""The process kit: frames to and from a real child, its end, supervision and restart delays."""

from __future__ import annotations

import asyncio

from service.child_processes import Child, RestartBackoff, keep_running


async def test_frames_go_both_ways_in_order_and_stray_prints_do_not_corrupt_them() -> None:
    child = await Child.spawn("tests.child_echo")
    try:
        messages = [("start", {"a": 1}, 0), b"\x00" * (5 * 1024 * 1024), "après"]  # one frame of 5 MiB
        for message in messages:
            child.send(message)
        assert [await asyncio.wait_for(child.receive(), 10) for _ in messages] == messages
        assert await child.stop(5.0) == 0  # EOF on its stdin ends it
        assert await child.receive() is None  # its stdout ended between frames
    finally:
        child.kill()
        await child.wait()


async def test_exit_code_and_kill() -> None:
    child = await Child.spawn("tests.child_echo")
    child.send(("exit", 3))
    assert await child.receive() is None
    assert await child.wait() == 3
    stuck = await Child.spawn("tests.child_echo")
    assert stuck.running
    stuck.kill()
    assert await stuck.wait() != 0
    assert not stuck.running


async def test_keep_running_restarts_with_backoff_until_stopped() -> None:
    stop = asyncio.Event()
    restarts: list[tuple[int | None, float]] = []

    async def run_once() -> int:
        child = await Child.spawn("tests.child_echo")
        child.send(("exit", 7))
        return await child.wait()

    def on_restart(code: int | None, delay: float) -> None:
        restarts.append((code, delay))
        if len(restarts) == 3:
            stop.set()

    await asyncio.wait_for(keep_running(run_once, stop, on_restart, RestartBackoff(first_seconds=0.01)), 30)
    assert restarts == [(7, 0.01), (7, 0.02), (7, 0.04)]


def test_restarts_after_a_second_then_double_up_to_30_seconds() -> None:
    backoff = RestartBackoff()
    assert [backoff.next(lived_seconds=5.0) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next(lived_seconds=61.0) == 1.0  # one that served a minute resets it
    assert backoff.next(lived_seconds=5.0) == 2.0
