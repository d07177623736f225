"""Images sent to `/check` and `/check/batch` as `media.image` (base64): finding, decoding, and
folding the computed PDQ hash into the event.

HTTP only: the wire model (`service.events.Media`) has no `image` field, so the stream's decoder
ignores one as it ignores any unknown field. Here a second msgspec pass over the body reads just
`media.image` (~0.26 µs for a typical 270-byte event), and only for events that decoded with a
`media` object: text events, most of the traffic, pay nothing. (Gating on `b"image" in body`
instead was measured slower than the probe itself, and misses `\\u`-escaped keys.)

A computed hash with PDQ quality below 50 is not added to `media.pdq`: PDQ advises discarding
such hashes (flat or nearly uniform images hash alike), and docs/rules.md asks senders to send
only hashes of quality ≥ 50 — here the API is the sender. The response header reports it anyway.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from typing import Final

import msgspec

from service.api.errors import ApiError, decode_error_detail
from service.api.schemas import ErrorDetail
from service.events import ChatEvent, Media
from service.media_hashing import PDQ_MIN_QUALITY, ImageError, ImageTooLarge, PdqHash

PDQ_HEADER: Final = b"redline-media-pdq"
# What the decoder accepts character-wise (stated in the OpenAPI schema); 422 for anything else.
BASE64_IMAGE_PATTERN: Final = r"^(data:[^,]*;base64,)?[A-Za-z0-9+/_\-\s]*=*\s*$"
_DATA_URL: Final = re.compile(r"data:[^,]{0,200};base64,", re.IGNORECASE)
_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/\-_ \t\r\n=]|(?<==)[^=\s]")
_WHITESPACE: Final = b" \t\r\n"
_URL_SAFE: Final = bytes.maketrans(b"-_", b"+/")


class _ImageMedia(msgspec.Struct, frozen=True):
    image: str | None = None


class _ImageProbe(msgspec.Struct, frozen=True):
    media: _ImageMedia | None = None


_probe: Final = msgspec.json.Decoder(_ImageProbe)
_batch_probe: Final = msgspec.json.Decoder(list[_ImageProbe])


def probe_image(body: bytes, path_prefix: str = "") -> str | None:
    """`media.image` of a JSON event body (already decoded as an event), or None."""
    try:
        found = _probe.decode(body)
    except msgspec.DecodeError as exc:  # only a wrong type of media.image gets here
        raise ApiError(422, "invalid event", [decode_error_detail(str(exc), path_prefix)]) from exc
    return None if found.media is None else found.media.image


def probe_batch_images(body: bytes) -> list[tuple[int, str]]:
    """(index, `media.image`) of each event of a batch body that carries one."""
    try:
        found = _batch_probe.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(422, "invalid event", [decode_error_detail(str(exc))]) from exc
    return [(i, p.media.image) for i, p in enumerate(found) if p.media is not None and p.media.image is not None]


def decode_base64_image(text: str, max_bytes: int, path: str) -> bytes:
    """Standard or URL-safe base64, padded or not, optionally line-wrapped or behind a
    `data:<type>;base64,` prefix. 413 above `max_bytes` decoded (checked before decoding).

    Bytes-level C passes only (`bytes.translate`, `binascii`): a 1 MiB string costs ~1 ms; the
    regex that names the offending character runs only when decoding failed.
    """
    prefix = _DATA_URL.match(text)
    payload = text[prefix.end() :] if prefix else text
    if not payload.isascii():
        raise _not_base64(payload, path)
    raw = payload.encode("ascii").translate(_URL_SAFE, _WHITESPACE).rstrip(b"=")
    if len(raw) * 3 // 4 > max_bytes:
        raise ApiError(413, f"image larger than {max_bytes} bytes")
    if len(raw) % 4 == 1:
        raise _invalid_image(f"not base64: {len(raw)} base64 digits cannot encode whole bytes", path)
    try:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise _not_base64(payload, path) from exc


def _not_base64(payload: str, path: str) -> ApiError:
    bad = _NOT_BASE64.search(payload)
    where = f"{bad.group()!r} at offset {bad.start()} of the base64 data" if bad else "misplaced padding"
    return _invalid_image(f"not base64: {where}", path)


def _invalid_image(message: str, path: str) -> ApiError:
    return ApiError(422, "invalid image", [ErrorDetail(message=message, path=path)])


def check_image_size(data: bytes | bytearray, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise ApiError(413, f"image larger than {max_bytes} bytes")


def raise_for_failures(results: Sequence[PdqHash | ImageError], paths: Sequence[str]) -> list[PdqHash]:
    """The hashes, or 422 listing every image that could not be hashed (with its path)."""
    failed = [
        ErrorDetail(message=str(result), path=path)
        for result, path in zip(results, paths, strict=True)
        if isinstance(result, ImageError)
    ]
    if failed:
        bombs = sum(1 for result in results if isinstance(result, ImageTooLarge))
        raise ApiError(422, "image too large" if bombs == len(failed) else "invalid image", failed)
    return [result for result in results if isinstance(result, PdqHash)]


def with_hash(event: ChatEvent, found: PdqHash) -> ChatEvent:
    """The event as the engine should see it: a usable hash appended to `media.pdq`, `text` → `image`."""
    if not found.usable:
        return event
    media = event.media or Media()
    return msgspec.structs.replace(
        event,
        type="image" if event.type == "text" else event.type,
        media=msgspec.structs.replace(media, pdq=(*media.pdq, found.hex)),
    )


def pdq_header(found: PdqHash, event_index: int | None = None) -> tuple[bytes, bytes]:
    """`Redline-Media-Pdq: <hex>; quality=<n>[; event=<i>][; ignored=low-quality]`."""
    value = f"{found.hex}; quality={found.quality}"
    if event_index is not None:
        value += f"; event={event_index}"
    if found.quality < PDQ_MIN_QUALITY:
        value += "; ignored=low-quality"
    return PDQ_HEADER, value.encode("ascii")
