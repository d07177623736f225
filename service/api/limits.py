"""Request size limits: body bytes (413), events per batch (413), characters per scanned field (422).

The body limit is enforced twice: `BodyLimitMiddleware` refuses a declared Content-Length above it
before anything is read, and `read_body` counts the bytes actually streamed (chunked uploads, or a
client that lies about its length).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import ApiError, error_response
from service.api.schemas import ErrorDetail
from service.errors import RedlineError
from service.events import AdHocEvent, ChatEvent
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_batch_events: int
    max_text_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_batch_events, settings.max_text_chars)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes")


class ClientGone(RedlineError):
    """The client disconnected before its body was complete."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as more than `limit` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def require_json(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """415 unless the body is declared as JSON: a form post is a client mistake, not an event."""
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            if media_type == b"application/json" or media_type.endswith(b"+json"):
                return
            break
    raise ApiError(415, "Content-Type must be application/json")


def check_text_lengths(event: AdHocEvent | ChatEvent, limit: int, path: str = "$") -> None:
    """422 when a scanned field is longer than `limit` characters (the field's JSON path named)."""
    if len(event.text) > limit:
        raise _too_long(f"{path}.text", limit)
    if event.file is not None and len(event.file.name) > limit:
        raise _too_long(f"{path}.file.name", limit)
    if event.link is not None and len(event.link.url) > limit:
        raise _too_long(f"{path}.link.url", limit)


def _too_long(path: str, limit: int) -> ApiError:
    detail = ErrorDetail(message=f"Expected `str` of length <= {limit}", path=path)
    return ApiError(422, "invalid event", [detail])


class BodyLimitMiddleware:
    """Refuses a declared Content-Length above the limit before the app reads a byte."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    try:
                        declared = int(value)
                    except ValueError:
                        declared = -1
                    if declared < 0:
                        await error_response(400, "invalid Content-Length")(scope, receive, send)
                        return
                    if declared > self.max_body_bytes:
                        response = error_response(413, str(body_too_large(self.max_body_bytes)))
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
