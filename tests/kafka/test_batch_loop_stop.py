"""A stop request ends the consume loop even while aiokafka's getmany waits without a bound.

aiokafka's `getmany` waits for a group reassignment to finish before it returns anything
(Fetcher.fetched_records → wait_for_assignment), with no timeout. A CI run once saw SIGTERM leave
`serve`'s stream in such a wait for the whole drain budget. The consume loop races every fetch
against the stop request. The consumer here is a stand-in whose `getmany` never returns: the
Kafka behaviour is aiokafka's; what is tested is that the loop does not depend on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.kafka.batch_loop import BatchLoop
from service.kafka.connection import Clients
from service.readiness import Readiness
from service.settings import Settings


class _StuckConsumer:
    """getmany never answers, as during a reassignment that does not finish."""

    def __init__(self) -> None:
        self.fetching = asyncio.Event()
        self.cancelled = 0

    def paused(self) -> set[Any]:
        return set()

    def resume(self, *partitions: Any) -> None:
        pass

    def assignment(self) -> set[Any]:
        return set()

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.fetching.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {}


class _IdleWindow:
    """A commit window with nothing in flight."""

    failure = None
    full = False

    def check(self) -> None:
        pass

    async def realign(self) -> None:
        pass


async def test_stop_interrupts_a_fetch_that_never_returns() -> None:
    loop = BatchLoop(Settings(), handler=None, name="test", topic="t", group_id="g",  # type: ignore[arg-type]
                     readiness=Readiness().part("test", "not ready"))
    consumer = _StuckConsumer()
    clients = Clients(consumer, None, None)  # type: ignore[arg-type]
    running = asyncio.create_task(loop._consume_loop(_IdleWindow(), clients))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(consumer.fetching.wait(), 5.0)
        await asyncio.sleep(0.3)  # longer than poll_timeout_ms: the fetch is stuck, not slow
        assert not running.done()
        loop.request_stop()
        await asyncio.wait_for(running, 1.0)  # returns promptly, without an exception
        assert consumer.cancelled == 1  # the stuck fetch was abandoned, not left running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
