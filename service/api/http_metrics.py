"""Counts and times every HTTP request (pure ASGI: one `send` wrapper, cached metric children).

`route` is the route template when the path is one of the app's routes, else "other"; `method`
a standard verb or "other". Both come from fixed sets, so hostile paths cannot add series.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

OTHER = "other"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, routes: Iterable[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.methods = frozenset(metrics.HTTP_METHODS)
        # `.labels()` takes a lock and hashes strings; resolve each label set once.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        route = path if path in self.routes else OTHER
        verb = method if method in self.methods else OTHER
        status = 500  # if the app raises before answering, the server error handler sends a 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._count(route, verb, status).inc()
            self._timer(route, verb).observe(time.perf_counter() - started)

    def _count(self, route: str, method: str, status: int) -> Counter:
        key = (route, method, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metrics.http_requests_total.labels(route, method, str(status))
        return child

    def _timer(self, route: str, method: str) -> Histogram:
        key = (route, method)
        child = self._timers.get(key)
        if child is None:
            child = self._timers[key] = metrics.http_request_duration_seconds.labels(route, method)
        return child
