"""`POST /check` and `POST /check/batch`: the synchronous door to the engine.

The hot path skips FastAPI's validation and serialisation (measured to cost more than the whole
classifier): `JsonEndpoint` hands the raw body to `Checker`, which decodes it with msgspec into
the same structs the stream uses and classifies with `runtime.engine` read at that moment (a
reload swaps it between requests, never during one), `now` = the clock at request time (UTC),
as the stream reads it per batch.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Final

import msgspec
from fastapi import FastAPI
from starlette.types import ASGIApp

from service import metrics
from service.api import openapi
from service.api.asgi_route import AsgiRoute, JsonEndpoint
from service.api.errors import ApiError, decode_error_detail
from service.api.limits import Limits, check_text_lengths
from service.api.schemas import ErrorDetail, encode
from service.api.verdict_tally import VerdictTally
from service.errors import EventDecodeError
from service.events import AdHocEvent, ChatEvent, decode_adhoc_event, decode_event, encode_verdict
from service.runtime import Runtime

_batch_decoder: Final = msgspec.json.Decoder(list[AdHocEvent])
_classify_timer: Final = metrics.classify_duration_seconds.labels("http")


def _with_id(event: AdHocEvent) -> ChatEvent:
    return event.with_id(str(uuid.uuid4()) if event.id is None else event.id)


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid event", [decode_error_detail(message)])


def _decode_one(body: bytes) -> ChatEvent:
    # Most events carry their id (the idempotency key): one msgspec pass straight to a ChatEvent.
    # Without one, the AdHocEvent decoder gives the event (or the error message) and an id is set.
    try:
        return decode_event(body)
    except EventDecodeError:
        pass
    try:
        adhoc = decode_adhoc_event(body)
    except EventDecodeError as exc:
        raise _invalid(str(exc)) from exc
    return _with_id(adhoc)


class Checker:
    """Body bytes in, verdict JSON out; raises `ApiError` for anything a client got wrong."""

    def __init__(self, runtime: Runtime, limits: Limits, tally: VerdictTally) -> None:
        self.runtime = runtime
        self.limits = limits
        self.tally = tally

    def check(self, body: bytes) -> bytes:
        event = _decode_one(body)
        check_text_lengths(event, self.limits.max_text_chars)
        now = datetime.now(UTC)
        engine = self.runtime.engine
        started = time.perf_counter()
        verdict = engine.classify(event, now)
        _classify_timer.observe(time.perf_counter() - started)
        self.tally.add(verdict)
        return encode_verdict(verdict)

    def check_batch(self, body: bytes) -> bytes:
        events = [_with_id(adhoc) for adhoc in self._decode_batch(body)]
        now = datetime.now(UTC)
        engine = self.runtime.engine
        started = time.perf_counter()
        verdicts = engine.classify_batch(events, now)
        if events:
            # Per-event share, like the stream's batches, so the histogram means one thing.
            share = (time.perf_counter() - started) / len(events)
            for _ in events:
                _classify_timer.observe(share)
        self.tally.add_many(verdicts)
        return encode(verdicts)

    def _decode_batch(self, body: bytes) -> list[AdHocEvent]:
        try:
            events = _batch_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise _invalid(str(exc)) from exc
        except RecursionError as exc:  # msgspec recurses into nested unknown fields
            raise _invalid("JSON is nested too deeply") from exc
        limit = self.limits.max_batch_events
        if len(events) > limit:
            # 422 like any other schema violation (the schema says maxItems); 413 is for bytes.
            detail = ErrorDetail(message=f"Expected `array` of length <= {limit}", path="$")
            raise ApiError(422, f"batch holds {len(events)} events, more than {limit}", [detail])
        for index, event in enumerate(events):
            check_text_lengths(event, self.limits.max_text_chars, f"$[{index}]")
        return events


def add_check_routes(
    app: FastAPI, runtime: Runtime, limits: Limits, tally: VerdictTally
) -> dict[tuple[str, str], ASGIApp]:
    """Mount the check routes; returns them by (method, path) for `HotRoutesMiddleware`."""
    checker = Checker(runtime, limits, tally)
    check = JsonEndpoint(checker.check, max_body_bytes=limits.max_body_bytes)
    check_batch = JsonEndpoint(checker.check_batch, max_body_bytes=limits.max_body_bytes)
    app.router.routes.append(
        AsgiRoute(
            "/check",
            check,
            name="check",
            methods=["POST"],
            tags=["check"],
            summary="Classify one event",
            description="Body: a ChatEvent (`id` optional; a UUID is assigned when absent). "
            "Answers its Verdict, exactly as the stream would publish it for this event and pack.",
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
            "Answers one Verdict per event, in order; all share one `now`, as a stream batch does.",
            openapi_extra=openapi.check_batch_operation(),
        )
    )
    return {("POST", "/check"): check, ("POST", "/check/batch"): check_batch}
