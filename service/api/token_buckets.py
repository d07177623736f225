"""Token buckets keyed by client, with bounded memory: the request rate limit and the failed-auth
throttle both count with them."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from service.settings import Settings


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int
    max_clients: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimit | None:
        """None when rate limiting is off (`rate_limit_per_second` = 0)."""
        if settings.rate_limit_per_second <= 0:
            return None
        burst = settings.rate_limit_burst or max(1, math.ceil(settings.rate_limit_per_second))
        return cls(settings.rate_limit_per_second, burst, settings.rate_limit_max_clients)


class TokenBuckets:
    """Buckets keyed by client; `take` answers 0 when a request may pass, else the seconds to wait."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        # client → (tokens, time of the last refill); order = least recently seen first.
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: bytes) -> float:
        return self._settle(client, take=True)

    def wait(self, client: bytes) -> float:
        """Like `take`, without taking: 0 when a token is there, else the seconds until one is."""
        return self._settle(client, take=False)

    def _settle(self, client: bytes, *, take: bool) -> float:
        limit = self._limit
        now = self._clock()
        found = self._buckets.get(client)
        if found is None:
            if not take:
                return 0.0  # an unseen client has a full bucket: nothing to store yet
            tokens = float(limit.burst)
            if len(self._buckets) >= limit.max_clients:
                self._buckets.popitem(last=False)
        else:
            tokens = min(float(limit.burst), found[0] + (now - found[1]) * limit.per_second)
            self._buckets.move_to_end(client)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0 if take else tokens, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / limit.per_second
