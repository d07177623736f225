"""Request size limits: body bytes (413), events per batch (422), each event's own limits (422, the
same as every door's: service/admission.py), image bytes (413).

The body limit is enforced twice: `BodyLimitMiddleware` refuses a declared Content-Length above it
before anything is read, and `read_body` counts the bytes actually streamed (chunked uploads, or a
client that lies about its length). A multipart image upload to an upload route may be as large as
`max_upload_bytes`: the image part (up to `max_image_bytes`) plus an event part and the framing
(up to `max_body_bytes`); JSON bodies keep `max_body_bytes` everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.admission import EventLimits, refusal
from service.api.errors import ApiError, error_response
from service.api.schemas import ErrorDetail
from service.errors import RedlineError
from service.events import AdHocEvent, ChatEvent
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_batch_events: int
    events: EventLimits  # per event, the same on every door (service/admission.py)
    max_image_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_batch_events, EventLimits.from_settings(settings),
                   settings.max_image_bytes)

    @property
    def max_upload_bytes(self) -> int:
        """A multipart upload: the image part plus an event part (and framing) of a JSON body's size."""
        return self.max_image_bytes + self.max_body_bytes


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes")


class ClientGone(RedlineError):
    """The client disconnected before its body was complete."""


def body_chunk(message: Message, received: int, limit: int) -> bytes:
    """The body chunk `message` carries, after `received` bytes: ClientGone on a disconnect, 413
    once the body passes `limit`. One check for every body reader; a plain function, because an
    async generator over the messages costs ~2 µs more per request on `/check`."""
    if message["type"] == "http.disconnect":
        raise ClientGone
    chunk: bytes = message.get("body", b"")
    if received + len(chunk) > limit:
        raise body_too_large(limit)
    return chunk


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as more than `limit` bytes have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = body_chunk(message, size, limit)
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The raw Content-Type header value (b"" when absent)."""
    for name, value in headers:
        if name == b"content-type":
            return value
    return b""


def media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def is_json(value: bytes) -> bool:
    kind = media_type(value)
    return kind == b"application/json" or kind.endswith(b"+json")


def is_multipart_form(value: bytes) -> bool:
    return media_type(value) == b"multipart/form-data"


def admit(event: AdHocEvent | ChatEvent, limits: EventLimits, root: str = "$") -> None:
    """422 naming the field (its JSON path under `root`) when the event is over a limit."""
    found = refusal(event, limits)
    if found is not None:
        found = found.at(root)
        raise ApiError(422, "invalid event", [ErrorDetail(message=found.message, path=found.path)])


class BodyLimitMiddleware:
    """Refuses a declared Content-Length above the limit before the app reads a byte.

    Multipart uploads to `upload_routes` ((method, path) pairs) get `max_upload_bytes` instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        upload_routes: Collection[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_body_bytes if max_upload_bytes is None else max_upload_bytes
        self.upload_routes = frozenset(upload_routes)

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
                    limit = self._limit(scope) if declared > self.max_body_bytes else self.max_body_bytes
                    if declared > limit:
                        response = error_response(413, str(body_too_large(limit)))
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)

    def _limit(self, scope: Scope) -> int:
        # Looked up only for bodies above max_body_bytes: the common small request pays nothing.
        if (scope["method"], scope["path"]) in self.upload_routes and is_multipart_form(content_type(scope["headers"])):
            return self.max_upload_bytes
        return self.max_body_bytes
