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

from kafka_helpers import rules_dir

from service.rules.loader import load_pack
from service.runtime import Runtime
from service.settings import Settings
from service.stream.consumer import StreamProcessor


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


async def test_stop_interrupts_a_fetch_that_never_returns() -> None:
    settings = Settings(rules=rules_dir(), stream_classify_worker="off")
    processor = StreamProcessor(settings, Runtime(settings=settings, engine=load_pack(rules_dir())))
    consumer = _StuckConsumer()
    processor._consumer = consumer  # type: ignore[assignment]
    committer: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())  # type: ignore[arg-type]
    sender: asyncio.Task[None] = asyncio.create_task(asyncio.Event().wait())  # type: ignore[arg-type]
    loop = asyncio.create_task(processor._consume_loop(committer, sender))
    try:
        await asyncio.wait_for(consumer.fetching.wait(), 5.0)
        await asyncio.sleep(0.3)  # longer than poll_timeout_ms: the fetch is stuck, not slow
        assert not loop.done()
        processor.request_stop()
        await asyncio.wait_for(loop, 1.0)  # returns promptly, without an exception
        assert consumer.cancelled == 1  # the stuck fetch was abandoned, not left running
    finally:
        for task in (committer, sender, loop):
            task.cancel()
        await asyncio.gather(committer, sender, loop, return_exceptions=True)
