"""The HTTP front's own protection: bounded headers, read timeouts, a connection cap, JSON refusals.

uvicorn's httptools protocol buffers request headers without a size or count limit and without a
timeout, keeps a connection that never sends a byte open for ever, and answers a malformed request
with a plain-text 400. `ConnectionGuard` sits in front of it as the protocol uvicorn instantiates
per connection (`uvicorn.Config(http=...)` takes a protocol class): it reads the request framing
with its own httptools parser — what the inner protocol will see, byte for byte — and forwards the
data only once it is within bounds. The inner protocol (uvicorn's own) does everything else.

    connection_made ─ over `max_connections` open? ── 503 JSON, close
    data_received ── own parser: header bytes / header count over the limit? ── 431 JSON, close
                     malformed (bad Content-Length, NUL in a header…)? ───────── 400 JSON, close
                  └─ else forward to uvicorn's protocol
    timers ───────── headers not complete within `header_timeout_seconds` ──── 408 JSON, close
                     body not complete within `body_timeout_seconds` ────────── 408 JSON, close

The header timer runs from the connection's first moment (a client that connects and sends
nothing is closed) and from the first byte of each later request; between requests uvicorn's own
keep-alive timeout closes idle connections. A refusal written while an earlier pipelined response
may still be in flight can interleave with it: only the offending connection is affected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import metrics
from service.api.schemas import ErrorBody, encode


@dataclass(frozen=True, slots=True)
class HttpFrontLimits:
    max_connections: int
    max_header_bytes: int
    max_headers: int
    header_timeout_seconds: float
    body_timeout_seconds: float


@dataclass(slots=True)
class _Open:
    """Connections open now, shared by every connection of one server."""

    count: int = 0


_REASONS: Final = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response in the API's error shape, closing the connection."""
    body = encode(ErrorBody(error=message, detail=[]))
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _REASONS[status], len(body))
    )
    return head + body


class _Framing:
    """httptools callbacks: where the current request is, and how large its head is so far."""

    __slots__ = ("begun", "head_bytes", "headers", "in_body", "started")

    def __init__(self) -> None:
        self.begun = 0  # requests begun on this connection
        self.started = False  # a request's head is being read
        self.in_body = False
        self.headers = 0
        self.head_bytes = 0  # request line and complete headers, as parsed

    def on_message_begin(self) -> None:
        self.begun += 1
        self.started = True
        self.headers = 0
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += 1
        self.head_bytes += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self.started = False
        self.in_body = True

    def on_message_complete(self) -> None:
        self.in_body = False


class ConnectionGuard(asyncio.Protocol):
    """One connection: checks its framing, then hands the bytes to uvicorn's httptools protocol."""

    limits: HttpFrontLimits  # set on the per-server subclass (GuardedServer.protocol)
    open_connections: _Open

    def __init__(self, **uvicorn_arguments: Any) -> None:
        self._inner = HttpToolsProtocol(**uvicorn_arguments)
        self._framing = _Framing()
        self._parser = httptools.HttpRequestParser(self._framing)
        # As uvicorn sets up its own parser, so that both read the same bytes the same way.
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timing: str | None = None  # which timer runs: "header", "body" or none
        self._seen_begun = 0
        self._raw_head_bytes = 0  # bytes received while a head was incomplete (a never-ending header)
        self._refused = False
        self._counted = False
        self._passthrough = False  # after an upgrade request: only the inner protocol reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        limit = self.limits.max_connections
        if self.open_connections.count >= limit:
            self._refuse(503, f"too many open connections (limit {limit}); retry later", "connections")
            return
        self.open_connections.count += 1
        self._counted = True
        metrics.http_open_connections.set(self.open_connections.count)
        self._start_timer("header")  # a client that connects and sends nothing is closed too
        self._inner.connection_made(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._passthrough:
            self._inner.data_received(data)
            return
        framing = self._framing
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Redline speaks no upgraded protocol: uvicorn answers the request as a plain one,
            # and the connection lives at most as long as a body may take.
            self._passthrough = True
            self._start_timer("body")
            self._inner.data_received(data)
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"invalid HTTP request: {_parser_reason(exc)}", "invalid_request")
            return
        if framing.started:
            self._raw_head_bytes = self._raw_head_bytes + len(data) if framing.begun == self._seen_begun else len(data)
        else:
            self._raw_head_bytes = 0
        limits = self.limits
        if max(framing.head_bytes, self._raw_head_bytes) > limits.max_header_bytes:
            self._refuse(431, f"request headers larger than {limits.max_header_bytes} bytes", "header_size")
            return
        if framing.headers > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} request headers", "header_count")
            return
        self._follow(framing)
        self._inner.data_received(data)

    def _follow(self, framing: _Framing) -> None:
        """Run the timer the request's state asks for: its head, its body, or none between requests."""
        wanted = "body" if framing.in_body else "header" if framing.started else None
        new_request = framing.begun != self._seen_begun and self._seen_begun > 0
        self._seen_begun = framing.begun
        if wanted is None:
            self._cancel_timer()
        elif wanted != self._timing or new_request:
            self._start_timer(wanted)

    def eof_received(self) -> None:
        if not self._refused:
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._counted:
            self._counted = False
            self.open_connections.count -= 1
            metrics.http_open_connections.set(self.open_connections.count)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _start_timer(self, timing: str) -> None:
        self._cancel_timer()
        seconds = self.limits.header_timeout_seconds if timing == "header" else self.limits.body_timeout_seconds
        self._timing = timing
        self._timer = asyncio.get_running_loop().call_later(seconds, self._on_timeout, timing, seconds)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timing = None

    def _on_timeout(self, timing: str, seconds: float) -> None:
        self._timer = None
        self._timing = None
        if self._passthrough:
            if self._transport is not None:
                self._transport.close()
            return
        part = "headers" if timing == "header" else "body"
        self._refuse(408, f"request {part} not received within {seconds:g} s", f"{timing}_timeout")

    def _refuse(self, status: int, message: str, reason: str) -> None:
        self._refused = True
        self._cancel_timer()
        metrics.http_refused_connections_total.labels(reason).inc()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(refusal(status, message))
            transport.close()


def _parser_reason(exc: httptools.HttpParserError) -> str:
    # llhttp's messages name the problem ("Invalid header value char", "Invalid character in
    # Content-Length"); they never echo the request's bytes.
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


@dataclass
class GuardedServer:
    """What `serve` gives uvicorn: the per-server protocol class, and its open-connection count."""

    limits: HttpFrontLimits
    open_connections: _Open = field(default_factory=_Open)

    @property
    def protocol(self) -> type[asyncio.Protocol]:
        """A ConnectionGuard class bound to this server's limits and count (uvicorn instantiates it)."""
        bound = {"limits": self.limits, "open_connections": self.open_connections}
        return type("GuardedHttpProtocol", (ConnectionGuard,), bound)
