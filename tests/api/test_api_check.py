"""`POST /check` and `POST /check/batch` over ASGI: verdicts, ids, `now`, and every client error."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.events import decode_event, decode_verdict, encode_event
from service.runtime import Runtime
from tests.api.conftest import ClientFactory, asgi_client

EVENTS: list[dict[str, Any]] = [
    # secrecy marking in a text message
    {"id": "e-1", "chat": {"id": "g"}, "text": "这份是机密文件"},
    # an official receiving a red packet
    {"id": "e-2", "type": "red_packet", "sender": {"id": "u", "roles": ["official"]},
     "payment": {"amount": 88.8, "direction": "receive"}},
    # nothing to see
    {"id": "e-3", "chat": {"id": "g", "kind": "direct", "members": 2}, "text": "明天开会"},
    # a transfer inside an election window (the decision depends on sent_at, not on `now`)
    {"id": "e-4", "type": "transfer", "sent_at": "2026-03-10T10:00:00+08:00",
     "payment": {"amount": 100, "direction": "send"}},
    # an event without sent_at: the engine uses `now`
    {"id": "e-5", "type": "transfer", "payment": {"amount": 100, "direction": "send"}},
    # a shadow rule
    {"id": "e-6", "text": "发红包，请投票给我"},
    # every optional field
    {"id": "e-7", "type": "link", "chat": {"id": "g"}, "sender": {"roles": []}, "text": "看看",
     "link": {"url": "https://example.com/shop"}, "file": {"name": "机密.docx", "size": 10},
     "media": {"pdq": ["0" * 64], "sha256": "a" * 64}, "forward": {"origin_id": "o", "shares": 9, "views": 90}},
]


async def post_json(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    return await client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


@pytest.mark.parametrize("event", EVENTS, ids=[e["id"] for e in EVENTS])
async def test_check_answers_exactly_what_the_engine_answers(
    client: httpx.AsyncClient, runtime: Runtime, event: dict[str, Any]
) -> None:
    response = await post_json(client, "/check", event)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    verdict = decode_verdict(response.content)
    # Same event, same `now` (the verdict's decided_at) → the identical verdict.
    expected = runtime.engine.classify(decode_event(json.dumps(event)), verdict.decided_at)
    assert verdict == expected


async def test_check_reads_the_clock_at_request_time_in_utc(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    verdict = decode_verdict((await post_json(client, "/check", EVENTS[0])).content)
    after = datetime.now(UTC)
    assert before <= verdict.decided_at <= after
    assert verdict.decided_at.utcoffset() is not None
    assert verdict.decided_at.utcoffset().total_seconds() == 0


async def test_check_assigns_a_uuid4_when_id_is_absent(client: httpx.AsyncClient) -> None:
    event = {k: v for k, v in EVENTS[0].items() if k != "id"}
    ids = {decode_verdict((await post_json(client, "/check", event)).content).event_id for _ in range(3)}
    assert len(ids) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)
    explicit_null = decode_verdict((await post_json(client, "/check", {**event, "id": None})).content)
    assert uuid.UUID(explicit_null.event_id).version == 4


async def test_batch_answers_in_order_with_one_now(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await post_json(client, "/check/batch", EVENTS)
    assert response.status_code == 200
    verdicts = [decode_verdict(json.dumps(v)) for v in response.json()]
    assert [v.event_id for v in verdicts] == [e["id"] for e in EVENTS]
    now = verdicts[0].decided_at
    assert {v.decided_at for v in verdicts} == {now}
    expected = runtime.engine.classify_batch([decode_event(json.dumps(e)) for e in EVENTS], now)
    assert verdicts == expected


async def test_batch_empty_and_ids_assigned(client: httpx.AsyncClient) -> None:
    assert (await post_json(client, "/check/batch", [])).json() == []
    body = (await post_json(client, "/check/batch", [{"text": "a"}, {"id": "x"}, {"text": "b"}])).json()
    assert body[1]["event_id"] == "x"
    assert len({v["event_id"] for v in body}) == 3


# (path, raw body, JSON path the 422 must name) — one row per kind of client mistake.
INVALID: list[tuple[str, bytes, str]] = [
    ("/check", b"{", "$"),  # truncated JSON
    ("/check", b"", "$"),  # empty body
    ("/check", b"[]", "$"),  # not an object
    ("/check", b'{"text": 1}', "$.text"),  # wrong type
    ("/check", b'{"chat": {}}', "$.chat"),  # missing required field
    ("/check", b'{"chat": {"id": 7}}', "$.chat.id"),  # nested wrong type
    ("/check", b'{"type": "hologram"}', "$.type"),  # unknown enum value
    ("/check", b'{"payment": {"amount": -1, "direction": "send"}}', "$.payment.amount"),  # below minimum
    ("/check", b'{"payment": {"amount": 1e999, "direction": "send"}}', "$.payment.amount"),  # infinity
    ("/check", b'{"media": {"sha256": "xyz"}}', "$.media.sha256"),  # pattern
    ("/check", b'{"sent_at": "2025-01-01T00:00:00"}', "$.sent_at"),  # timestamp without zone
    ("/check", b'{"forward": {"views": 1.5}}', "$.forward.views"),  # fraction for a count
    ("/check", b"\xff\xfe", "$"),  # not UTF-8
    ("/check", b"[" * 10000 + b"]" * 10000, "$"),  # nested too deeply
    ("/check", b'{"x": ' + b"[" * 10000 + b"]" * 10000 + b"}", "$"),  # deep unknown field
    ("/check/batch", b"{}", "$"),  # not an array
    ("/check/batch", b'[{"id": "a"}, {"chat": {}}]', "$[1].chat"),  # second item invalid
    ("/check/batch", b'[{"id": "a"}, 3]', "$[1]"),  # item not an object
]


@pytest.mark.parametrize(("path", "body", "json_path"), INVALID)
async def test_client_mistakes_are_422_with_the_json_path(
    client: httpx.AsyncClient, path: str, body: bytes, json_path: str
) -> None:
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "invalid event"
    assert payload["detail"][0]["path"] == json_path
    assert payload["detail"][0]["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_body_must_be_declared_json(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/check", content=b'{"text": "x"}', headers=headers)
    assert response.status_code == 415
    # /check also takes image uploads (tests/api/test_check_image.py)
    assert response.json()["error"] == "Content-Type must be application/json or multipart/form-data"


async def test_json_media_type_parameters_and_suffix_are_accepted(client: httpx.AsyncClient) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.chat+json"):
        response = await client.post("/check", content=b'{"text": "x"}', headers={"content-type": content_type})
        assert response.status_code == 200, content_type


async def test_limits(make_client: ClientFactory) -> None:
    async with make_client(max_body_bytes=200, max_batch_events=2, max_text_chars=5) as c:
        # declared Content-Length above the limit: refused before the body is read
        big = json.dumps({"text": "x" * 300}).encode()
        response = await c.post("/check", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"] == "request body larger than 200 bytes"

        # streamed (chunked, no Content-Length) above the limit: counted while reading
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 50

        response = await c.post("/check", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413

        # text longer than max_text_chars: 422 naming the field
        response = await post_json(c, "/check", {"text": "123456"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["path"] == "$.text"
        assert (await post_json(c, "/check", {"text": "12345"})).status_code == 200
        response = await post_json(c, "/check", {"link": {"url": "https://x"}})
        assert response.json()["detail"][0]["path"] == "$.link.url"
        response = await post_json(c, "/check/batch", [{"text": "1"}, {"file": {"name": "abcdefg"}}])
        assert response.json()["detail"][0]["path"] == "$[1].file.name"

        # more events than max_batch_events: 422 (a schema violation: maxItems)
        response = await post_json(c, "/check/batch", [{}, {}, {}])
        assert response.status_code == 422
        assert response.json()["error"] == "batch holds 3 events, more than 2"
        assert (await post_json(c, "/check/batch", [{}, {}])).status_code == 200


async def test_unknown_routes_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "detail": []}
    response = await client.get("/check")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "Method Not Allowed"


async def test_invalid_content_length_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/check", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"}
    )
    assert response.status_code == 400


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["id", "type", "chat", "text", "payment", "media", "file", "link", "forward",
                             "sent_at", "amount", "direction", "x"]), inner, max_size=5),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
))
async def test_no_body_makes_a_5xx(client: httpx.AsyncClient, body: bytes) -> None:
    for path in ("/check", "/check/batch"):
        response = await client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code in (200, 422), response.text
        assert response.headers["content-type"] == "application/json"


async def test_verdict_round_trips_the_wire_contract(client: httpx.AsyncClient) -> None:
    event = decode_event(json.dumps(EVENTS[1]))
    response = await client.post("/check", content=encode_event(event), headers={"content-type": "application/json"})
    assert decode_verdict(response.content).event_id == "e-2"


async def test_router_path_answers_like_the_shortcut(runtime: Runtime) -> None:
    """Under a root path HotRoutesMiddleware does not match; FastAPI's router reaches the same app."""
    async with asgi_client(runtime, root_path="/api") as client:
        response = await post_json(client, "/api/check", EVENTS[0])
        assert response.status_code == 200
        verdict = decode_verdict(response.content)
        assert verdict == runtime.engine.classify(decode_event(json.dumps(EVENTS[0])), verdict.decided_at)
        response = await client.post("/api/check", content=b"{", headers={"content-type": "application/json"})
        assert response.status_code == 422


async def test_batch_size_is_known_before_any_event_is_decoded(make_client: ClientFactory) -> None:
    # 349k empty objects in 1 MiB: refused from a count of the raw items, no event decoded or given
    # an id (it took 1.07 s and +77 MB when the count came after decoding).
    async with make_client(max_batch_events=1000) as c:
        body = b"[" + b",".join([b"{}"] * 349_000) + b"]"
        response = await c.post("/check/batch", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"] == "batch holds 349000 events, more than 1000"
        # Braces inside texts are not events: 1001 of them in one event's text still pass the count.
        one = json.dumps([{"text": "{" * 1001}]).encode()
        response = await c.post("/check/batch", content=one, headers={"content-type": "application/json"})
        assert response.status_code == 200


async def test_a_time_no_clock_can_read_is_refused_not_a_500(client: httpx.AsyncClient) -> None:
    for sent_at in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"):
        response = await post_json(client, "/check", {"text": "hi", "sent_at": sent_at})
        assert response.status_code == 422, sent_at
        assert response.json()["detail"] == [
            {"message": "timestamp out of range once converted to UTC", "path": "$.sent_at"}
        ]
    in_range = {"text": "hi", "sent_at": "9999-12-31T23:59:59+01:00"}
    assert (await post_json(client, "/check", in_range)).status_code == 200


async def test_video_frames_are_bounded(make_client: ClientFactory) -> None:
    async with make_client(max_media_hashes=3) as c:
        frames = ["0" * 64] * 4
        response = await post_json(c, "/check", {"type": "video", "media": {"pdq": frames}})
        assert response.status_code == 422
        assert response.json()["detail"][0] == {"message": "Expected `array` of length <= 3", "path": "$.media.pdq"}
