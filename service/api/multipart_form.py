"""The `multipart/form-data` body of an image upload: part `image` (required) and part `event`.

Parsed as it streams in (PyPI `python-multipart`, Starlette's own parser), into memory: no
spooled temporary files (the container's root file system is read-only, and a disk round trip
buys nothing for a body that is bounded anyway). Each part is bounded as its bytes arrive — the
image by `max_image_bytes`, the event by `max_body_bytes` (413, naming the part) — and the whole
body by `max_upload_bytes`. Parts of other names are skipped without being kept. Errors name the
part as a JSON path into the form seen as an object: `$.image`, `$.event`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import Receive

from service.api.errors import ApiError
from service.api.limits import Limits, body_chunk
from service.api.schemas import ErrorDetail

IMAGE_PART = "image"
EVENT_PART = "event"


@dataclass
class UploadForm:
    image: bytes
    event: bytes | None  # ChatEvent JSON, as sent
    unknown_parts: tuple[str, ...] = ()  # names of parts that are neither (skipped, named back)


def invalid_upload(message: str, path: str = "$") -> ApiError:
    return ApiError(422, "invalid upload", [ErrorDetail(message=message, path=path)])


@dataclass
class _FormCollector:
    """The parser's callbacks: which part is being read, and the kept parts' bytes."""

    limits: Limits
    kept: dict[str, bytearray] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    ended: bool = False
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _part: str | None = None
    _buffer: bytearray | None = None
    _cap: int = 0

    def on_part_begin(self) -> None:
        self._part = None
        self._buffer = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            _, params = parse_options_header(bytes(self._header_value))
            self._part = params.get(b"name", b"").decode("utf-8", "replace")
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        name = self._part
        if name not in (IMAGE_PART, EVENT_PART):
            # An unknown part (`evnt` for `event`) is skipped, as an unknown JSON field is, and named
            # back the same way: a typo must not drop the event unseen.
            if name is not None and name not in self.unknown:
                self.unknown.append(name)
            return
        if name in self.kept:
            raise invalid_upload(f"more than one `{name}` part (one image per upload)", f"$.{name}")
        self._cap = self.limits.max_image_bytes if name == IMAGE_PART else self.limits.max_body_bytes
        self._buffer = self.kept[name] = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        buffer = self._buffer
        if buffer is None:
            return
        buffer += data[start:end]
        if len(buffer) > self._cap:
            what = "image" if self._part == IMAGE_PART else "event part"
            raise ApiError(413, f"{what} larger than {self._cap} bytes")

    def on_end(self) -> None:
        self.ended = True


def boundary_of(content_type: bytes) -> bytes:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise invalid_upload("multipart/form-data without a boundary parameter in Content-Type")
    return boundary


async def read_upload_form(receive: Receive, content_type: bytes, limits: Limits) -> UploadForm:
    """Read and parse the whole upload; `ApiError` (413/422) or `ClientGone` otherwise."""
    collector = _FormCollector(limits)
    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": collector.on_part_begin,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_part_data": collector.on_part_data,
            "on_end": collector.on_end,
        },
    )
    size = 0
    limit = limits.max_upload_bytes
    while True:
        message = await receive()
        chunk = body_chunk(message, size, limit)
        size += len(chunk)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise invalid_upload(f"malformed multipart body: {exc}") from exc
        if not message.get("more_body", False):
            break
    if not collector.ended:
        raise invalid_upload("multipart body ends before its closing boundary")
    image = collector.kept.get(IMAGE_PART)
    if image is None:
        raise invalid_upload("missing the `image` part", "$")
    event = collector.kept.get(EVENT_PART)
    return UploadForm(bytes(image), None if event is None else bytes(event), tuple(collector.unknown))
