"""Per-client rate limiting: one token bucket per bearer key (per client IP when no key is sent),
as a pure ASGI middleware.

Only a key the KeyRing accepts gets a bucket of its own (auth refuses unknown keys on guarded
routes anyway; on open routes an unknown key counts as its sender's IP), so made-up keys cannot
fill the table or push a real client's bucket out. With auth off every client is its IP. Probes and
`/metrics` are never limited (a kubelet or Prometheus must not be starved by a busy client).
Memory is bounded: at most `max_clients` buckets, the least recently seen evicted first (an evicted
client comes back with a full bucket, which errs on the side of serving). Refusals answer 429 with
the usual JSON error body and `Retry-After` in whole seconds; nothing about the client is logged.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import KeyRing
from service.api.errors import error_response
from service.metrics import http_rate_limited_total
from service.settings import Settings

UNLIMITED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_BEARER: Final = b"bearer "


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
        limit = self._limit
        now = self._clock()
        found = self._buckets.get(client)
        if found is None:
            tokens = float(limit.burst)
            if len(self._buckets) >= limit.max_clients:
                self._buckets.popitem(last=False)
        else:
            tokens = min(float(limit.burst), found[0] + (now - found[1]) * limit.per_second)
            self._buckets.move_to_end(client)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / limit.per_second


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, limit: RateLimit, keys: KeyRing, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.keys = keys
        self.buckets = TokenBuckets(limit, clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNLIMITED_PATHS:
            wait_seconds = self.buckets.take(self._client(scope))
            if wait_seconds > 0:
                http_rate_limited_total.inc()
                headers = {"Retry-After": str(max(1, math.ceil(wait_seconds)))}
                await error_response(429, "rate limit exceeded", headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _client(self, scope: Scope) -> bytes:
        """The bearer key when it is a configured one, else the peer address."""
        token = _bearer_token(scope["headers"])
        if token and self.keys.grants(token) is not None:
            return b"key:" + token
        client = scope.get("client")
        return b"ip:" + (client[0].encode() if client else b"")


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"authorization":
            return value[7:].strip() if value[:7].lower() == _BEARER else b""
    return b""
