"""`POST /check` and `POST /check/batch`: the synchronous door to the engine.

The hot path skips FastAPI's validation and serialisation (measured to cost more than the whole
classifier): `JsonEndpoint` hands the raw body to `Checker`, which decodes it with msgspec into
the same structs the stream uses and classifies with `runtime.engine` read at that moment (a
reload swaps it between requests, never during one), `now` = the clock at request time (UTC),
as the stream reads it per batch.

Images (`media.image` in base64, or a multipart upload to `/check`) take a slower path: the JSON
is decoded on the loop as usual, the images are hashed in the child process of `ImageHasher`
(awaited, so other requests go on meanwhile), usable hashes are appended to `media.pdq`, and
the event is classified on the loop like any other. Each computed hash is reported in a
`Redline-Media-Pdq` response header; the Verdict body is unchanged.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive

from service import metrics
from service.api import openapi
from service.api.asgi_route import AsgiRoute, Headers, JsonEndpoint, Reply
from service.api.errors import ApiError, decode_error_detail
from service.api.image_hasher import ImageHasher
from service.api.image_input import (
    check_image_size,
    decode_base64_image,
    pdq_header,
    probe_batch_images,
    probe_image,
    raise_for_failures,
    with_hash,
)
from service.api.limits import Limits, admit
from service.api.multipart_form import read_upload_form
from service.api.schemas import ErrorDetail, encode
from service.api.verdict_tally import VerdictTally
from service.batches import give_back, scanned_chars, slices_by_chars
from service.errors import EventDecodeError
from service.events import (
    AdHocEvent,
    ChatEvent,
    Verdict,
    decode_adhoc_batch_noting,
    decode_adhoc_event_noting,
    decode_batch_noting,
    decode_event_noting,
    encode_verdict,
    unknown_field_paths,
)
from service.runtime import Runtime

_raw_batch_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])  # the items, undecoded
_classify_timer: Final = metrics.classify_duration_seconds.labels("http")


# A batch whose scanned text is longer than SLICED_BATCH_CHARS is classified in slices of at most
# SLICE_CHARS (service.batches: one engine batch call each, ~3 ms of ordinary chat, at most ~30 ms
# of the costliest hostile text), the loop given back between them.
SLICED_BATCH_CHARS: Final = 64 * 1024
SLICE_CHARS: Final = 16 * 1024


def _with_id(event: AdHocEvent) -> ChatEvent:
    return event.with_id(str(uuid.uuid4()) if event.id is None else event.id)


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid event", [decode_error_detail(message)])


def _decode_one(body: bytes) -> tuple[ChatEvent, bool]:
    """The event, and whether it had fields the contract does not know."""
    # Most events carry their id (the idempotency key): one msgspec pass straight to a ChatEvent.
    # Without one, the AdHocEvent decoder gives the event (or the error message) and an id is set.
    try:
        return decode_event_noting(body)
    except EventDecodeError:
        pass
    try:
        adhoc, unknown = decode_adhoc_event_noting(body)
    except EventDecodeError as exc:
        raise _invalid(str(exc)) from exc
    return _with_id(adhoc), unknown


# Fields /check takes besides the wire contract's: the base64 image it hashes itself.
CHECK_EXTRA_FIELDS: Final = frozenset({"media.image"})
UNKNOWN_FIELDS_HEADER: Final = b"redline-unknown-fields"


_BOOLEANS: Final = {b"true": True, b"false": False}  # a boolean in a query string (OpenAPI)


def strict_requested(query: bytes) -> bool:
    """`?strict=true`: unknown fields are a 422 instead of a warning header; 422 for a value that
    is neither true nor false."""
    strict = False
    for part in query.split(b"&") if query else ():
        name, _, value = part.partition(b"=")
        if name == b"strict":
            found = _BOOLEANS.get(value)
            if found is None:
                detail = ErrorDetail(message="Expected `true` or `false`", path="strict")
                raise ApiError(422, "invalid query parameter", [detail])
            strict = found
    return strict


# The header names at most this many fields: a request can hold thousands.
_HEADER_PATHS: Final = 32


def unknown_fields_reply(body: bytes, *, strict: bool, batch: bool) -> Headers:
    """For a body known to hold unknown fields: 422 naming each when `strict`, else the header
    that names them (the verdict itself stays exactly what the stream would publish)."""
    paths = unknown_field_paths(body, CHECK_EXTRA_FIELDS, batch=batch)
    if not paths:
        return []  # only `media.image` (or the like) was beyond the strict structs
    if strict:
        detail = [ErrorDetail(message="unknown field (the request asked for ?strict=true)", path=p) for p in paths]
        raise ApiError(422, "unknown fields", detail)
    return [(UNKNOWN_FIELDS_HEADER, _header_value(paths))]


def _header_value(paths: list[str]) -> bytes:
    shown = ", ".join(paths[:_HEADER_PATHS])
    if len(paths) > _HEADER_PATHS:
        shown += f", and {len(paths) - _HEADER_PATHS} more"
    # Field names are the client's: escaped to printable ASCII, as a header value must be.
    return shown.encode("ascii", "backslashreplace").translate(_PRINTABLE)


def _merged(first: Headers, second: Headers) -> Headers:
    """One unknown-fields header naming what both name."""
    values = [value for _, value in first + second]
    return [(UNKNOWN_FIELDS_HEADER, b", ".join(values))] if values else []


def _rooted(headers: Headers, root: str) -> Headers:
    """The unknown-fields header with its paths under `root` (`$.txt` → `$.event.txt`)."""
    return [(name, value.replace(b"$", root.encode())) for name, value in headers]


# Control characters left in a header value would break the response: each becomes `?`.
_PRINTABLE: Final = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in range(256))


class Checker:
    """Body bytes in, verdict JSON out; raises `ApiError` for anything a client got wrong."""

    def __init__(self, runtime: Runtime, limits: Limits, tally: VerdictTally, hasher: ImageHasher) -> None:
        self.runtime = runtime
        self.limits = limits
        self.tally = tally
        self.hasher = hasher

    def check(self, body: bytes, query: bytes = b"") -> bytes | Reply | Awaitable[Reply]:
        strict = strict_requested(query)
        event, unknown = _decode_one(body)
        admit(event, self.limits.events)
        warning = unknown_fields_reply(body, strict=strict, batch=False) if unknown else []
        # `media.image` lives in `media`: events without one (most traffic) skip the probe.
        image = None if event.media is None else probe_image(body)
        if image is not None:
            path = "$.media.image"
            images = [decode_base64_image(image, self.limits.max_image_bytes, path)]
            return self._check_images(event, images, [path], warning)
        payload = encode_verdict(self._classify(event))
        return (payload, warning) if warning else payload

    async def check_upload(self, receive: Receive, content_type: bytes, query: bytes = b"") -> Reply:
        """`POST /check` as multipart/form-data: part `image`, optional part `event` (a ChatEvent
        as on the wire: a `media.image` in it is not used there). Unknown fields of the event part
        are named or refused (`?strict=true`) as on a JSON body, under `$.event`."""
        strict = strict_requested(query)
        form = await read_upload_form(receive, content_type, self.limits)
        warning: Headers = []
        if form.unknown_parts:
            parts = [f"$.{name}" for name in form.unknown_parts]
            if strict:
                detail = [ErrorDetail(message="unknown form part (the request asked for ?strict=true)", path=p)
                          for p in parts]
                raise ApiError(422, "unknown form parts", detail)
            warning = [(UNKNOWN_FIELDS_HEADER, _header_value(parts))]
        if form.event is None:
            event = ChatEvent(id=str(uuid.uuid4()), type="image")
        else:
            try:
                event, unknown = _decode_one(form.event)
                if unknown:
                    fields = _rooted(unknown_fields_reply(form.event, strict=strict, batch=False), "$.event")
                    warning = _merged(warning, fields)
            except ApiError as exc:
                # Paths in the event part are re-rooted under the part's name: `$.event.chat.id`.
                detail = [ErrorDetail(message=d.message, path="$.event" + (d.path or "$")[1:]) for d in exc.detail]
                raise ApiError(exc.status, exc.error, detail) from exc
            admit(event, self.limits.events, "$.event")
        return await self._check_images(event, [form.image], ["$.image"], warning)

    async def _check_images(
        self, event: ChatEvent, images: Sequence[bytes], paths: Sequence[str], warning: Headers | None = None
    ) -> Reply:
        for data in images:
            check_image_size(data, self.limits.max_image_bytes)
        hashes = raise_for_failures(await self.hasher.hash_images(images), paths)
        for found in hashes:
            event = with_hash(event, found)
        payload = encode_verdict(self._classify(event))
        return payload, [*(warning or []), *(pdq_header(found) for found in hashes)]

    def _classify(self, event: ChatEvent) -> Verdict:
        now = datetime.now(UTC)
        engine = self.runtime.engine
        started = time.perf_counter()
        verdict = engine.classify(event, now)
        _classify_timer.observe(time.perf_counter() - started)
        self.tally.add(verdict)
        return verdict

    def check_batch(self, body: bytes, query: bytes = b"") -> bytes | Reply | Awaitable[Reply]:
        strict = strict_requested(query)
        events, unknown = self._decode_batch(body)
        warning = unknown_fields_reply(body, strict=strict, batch=True) if unknown else []
        images = probe_batch_images(body) if any(event.media is not None for event in events) else []
        if images:
            return self._check_batch_images(events, images, warning)
        if sum(map(scanned_chars, events)) > SLICED_BATCH_CHARS:
            return self._check_batch_sliced(events, warning)
        payload = encode(self._classify_batch(events))
        return (payload, warning) if warning else payload

    async def _check_batch_sliced(self, events: list[ChatEvent], warning: Headers) -> Reply:
        """A batch heavy enough to hold the loop for long (up to ~1 MiB of hostile text: ~0.7 s)
        is classified in slices of at most `SLICE_CHARS`, giving the loop back between them, so
        /healthz, /readyz and other requests answer meanwhile. One engine and one `now` for all,
        as in the unsliced path: a reload between slices does not mix two packs in one answer."""
        now = datetime.now(UTC)
        engine = self.runtime.engine
        verdicts: list[Verdict] = []
        shares: list[float] = []
        for part in slices_by_chars(events, SLICE_CHARS):
            piece = events[part.start : part.stop]
            started = time.perf_counter()
            verdicts.extend(engine.classify_batch(piece, now))
            held = time.perf_counter() - started
            # Per-event share, like the stream's batches, so the histogram means one thing.
            shares.extend([held / len(piece)] * len(piece))
            await give_back(held)
        metrics.observe_many(_classify_timer, shares)
        self.tally.add_many(verdicts)
        return encode(verdicts), warning

    async def _check_batch_images(
        self, events: list[ChatEvent], images: list[tuple[int, str]], warning: Headers
    ) -> Reply:
        limit = self.limits.max_image_bytes
        paths = [f"$[{index}].media.image" for index, _ in images]
        blobs = [decode_base64_image(text, limit, path) for (_, text), path in zip(images, paths, strict=True)]
        hashes = raise_for_failures(await self.hasher.hash_images(blobs), paths)
        headers: Headers = list(warning)
        for (index, _), found in zip(images, hashes, strict=True):
            events[index] = with_hash(events[index], found)
            headers.append(pdq_header(found, index))
        return encode(self._classify_batch(events)), headers

    def _classify_batch(self, events: list[ChatEvent]) -> list[Verdict]:
        now = datetime.now(UTC)
        engine = self.runtime.engine
        started = time.perf_counter()
        verdicts = engine.classify_batch(events, now)
        if events:
            # Per-event share, like the stream's batches, so the histogram means one thing.
            share = (time.perf_counter() - started) / len(events)
            metrics.observe_many(_classify_timer, [share] * len(events))
        self.tally.add_many(verdicts)
        return verdicts

    def _decode_batch(self, body: bytes) -> tuple[list[ChatEvent], bool]:
        """The events, and whether any had fields the contract does not know."""
        # Limits before work: the batch's size is known before any event is decoded or given an id.
        self._check_batch_size(body)
        # As _decode_one: events that all carry their id decode straight to ChatEvents in one
        # msgspec pass (AdHocEvent.with_id costs ~3 µs per event); otherwise the AdHocEvent
        # decoder gives the events (or the precise error), and ids are set once all are admitted.
        limits = self.limits.events
        try:
            events, unknown = decode_batch_noting(body)
        except EventDecodeError:
            try:
                adhoc, unknown = decode_adhoc_batch_noting(body)
            except EventDecodeError as exc:
                raise _invalid(str(exc)) from exc
            for index, item in enumerate(adhoc):
                admit(item, limits, f"$[{index}]")
            return [_with_id(item) for item in adhoc], unknown
        for index, event in enumerate(events):
            admit(event, limits, f"$[{index}]")
        return events, unknown

    def _check_batch_size(self, body: bytes) -> None:
        """422 when the body's array holds more than `max_batch_events` items. Each event is an
        object, so a body with no more `{` than the limit passes at the cost of one byte count;
        otherwise the array is walked without decoding its items (~13 ms for 1 MiB of `{}`)."""
        limit = self.limits.max_batch_events
        if body.count(b"{") <= limit:
            return
        try:
            items = len(_raw_batch_decoder.decode(body))
        except (msgspec.DecodeError, RecursionError):
            return  # not a JSON array: the decoder says exactly why, next
        if items > limit:
            # 422 like any other schema violation (the schema says maxItems); 413 is for bytes.
            detail = ErrorDetail(message=f"Expected `array` of length <= {limit}", path="$")
            raise ApiError(422, f"batch holds {items} events, more than {limit}", [detail])


UPLOAD_ROUTES: Final = (("POST", "/check"),)  # take multipart/form-data up to `max_upload_bytes`


def add_check_routes(
    app: FastAPI, runtime: Runtime, limits: Limits, tally: VerdictTally, hasher: ImageHasher
) -> dict[tuple[str, str], ASGIApp]:
    """Mount the check routes; returns them by (method, path) for `HotRoutesMiddleware`."""
    checker = Checker(runtime, limits, tally, hasher)
    check = JsonEndpoint(checker.check, max_body_bytes=limits.max_body_bytes, upload=checker.check_upload)
    check_batch = JsonEndpoint(checker.check_batch, max_body_bytes=limits.max_body_bytes)
    # `?strict=true` is described in the operations' text, not declared as a parameter: a declared
    # query parameter beside the multipart body made schemathesis (4.32) count valid requests as
    # invalid ones accepted; tests/api/test_unknown_fields.py covers the parameter instead.
    app.router.routes.append(
        AsgiRoute(
            "/check",
            check,
            name="check",
            methods=["POST"],
            tags=["check"],
            summary="Classify one event",
            description="Body: a ChatEvent (`id` optional; a UUID is assigned when absent), or a "
            "multipart/form-data upload of an image (part `image`, optional part `event`). "
            "Answers its Verdict, exactly as the stream would publish it for this event and pack. "
            "An image (upload, or base64 `media.image`) is PDQ-hashed by the server and the hash "
            "appended to `media.pdq` (quality >= 50 only); each hash is returned in a "
            "`Redline-Media-Pdq` header. Fields the ChatEvent contract does not know are ignored and "
            "named in the `Redline-Unknown-Fields` header; with the query `?strict=true` they are "
            "refused (422, one detail per field).",
            openapi_extra=openapi.check_operation(),
        )
    )
    app.router.routes.append(
        AsgiRoute(
            "/check/batch",
            check_batch,
            name="check_batch",
            methods=["POST"],
            tags=["check"],
            summary="Classify events in order",
            description="Body: a JSON array of at most `max_batch_events` ChatEvents (422 above). "
            "Answers one Verdict per event, in order; all share one `now`, as a stream batch does. "
            "Events may carry a base64 `media.image` as on `POST /check`. Unknown fields are named in "
            "`Redline-Unknown-Fields` (`$[2].txt`), or refused with `?strict=true`, as on `POST /check`.",
            openapi_extra=openapi.check_batch_operation(),
        )
    )
    return {("POST", "/check"): check, ("POST", "/check/batch"): check_batch}
