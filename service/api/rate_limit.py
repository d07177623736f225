"""Per-client rate limiting: one token bucket (token_buckets.py) per bearer key (per client IP
when no key is sent), as a pure ASGI middleware.

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
from collections.abc import Callable, Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import KeyRing
from service.api.errors import error_response
from service.api.token_buckets import RateLimit, TokenBuckets
from service.metrics import http_rate_limited_total

UNLIMITED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_BEARER: Final = b"bearer "


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
