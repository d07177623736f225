"""A typo is visible: unknown fields are named back (header), or refused under ?strict=true."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import ClientFactory

JSON = {"content-type": "application/json"}


async def post(client: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    return await client.post(path, content=json.dumps(body).encode(), headers=JSON)


async def test_a_typo_is_named_back_and_the_verdict_is_unchanged(client: httpx.AsyncClient) -> None:
    # {"txt": "..."} answered a plain allow with no hint that `text` was misspelled.
    response = await post(client, "/check", {"id": "e1", "txt": "机密", "chat": {"id": "c", "kindd": "group"}})
    assert response.status_code == 200
    assert response.headers["redline-unknown-fields"] == "$.txt, $.chat.kindd"
    assert response.json()["action"] == "allow"  # what the stream decides for it: the field is ignored
    plain = await post(client, "/check", {"id": "e2", "text": "hello"})
    assert "redline-unknown-fields" not in plain.headers


async def test_strict_refuses_them_with_their_paths(client: httpx.AsyncClient) -> None:
    response = await post(client, "/check?strict=true", {"txt": "hi", "sender": {"role": "official"}})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "unknown fields"
    assert [d["path"] for d in body["detail"]] == ["$.txt", "$.sender.role"]
    assert (await post(client, "/check?strict=true", {"text": "hi"})).status_code == 200
    assert (await post(client, "/check?strict=false", {"txt": "hi"})).status_code == 200
    bad = await post(client, "/check?strict=yes", {"text": "hi"})
    assert bad.status_code == 422
    assert bad.json()["detail"] == [{"message": "Expected `true` or `false`", "path": "strict"}]


async def test_batch_names_each_item(client: httpx.AsyncClient) -> None:
    response = await post(client, "/check/batch", [{"text": "a"}, {"text": "b", "lnk": {}}, {"txt": "c"}])
    assert response.status_code == 200
    assert response.headers["redline-unknown-fields"] == "$[1].lnk, $[2].txt"
    strict = await post(client, "/check/batch?strict=true", [{"text": "a"}, {"txt": "c"}])
    assert [d["path"] for d in strict.json()["detail"]] == ["$[1].txt"]


async def test_media_image_is_no_unknown_field_on_check(client: httpx.AsyncClient) -> None:
    # /check hashes a base64 `media.image` itself: it is part of what the route takes.
    response = await post(client, "/check?strict=true", {"type": "image", "media": {"image": "!!"}})
    assert response.status_code == 422
    assert "unknown" not in response.json()["error"]  # refused as an undecodable image, not as unknown


@pytest.mark.parametrize("key", ["\u001f", "名字", "a,b", "x" * 300])
async def test_header_stays_a_valid_header_whatever_the_field_name(client: httpx.AsyncClient, key: str) -> None:
    response = await post(client, "/check", {"text": "hi", key: 1})
    assert response.status_code == 200
    value = response.headers["redline-unknown-fields"]
    assert value.isascii() and value.isprintable()


async def test_many_unknown_fields_are_summed_up(make_client: ClientFactory) -> None:
    async with make_client() as c:
        response = await post(c, "/check", {"text": "hi", **{f"f{i}": i for i in range(40)}})
    assert response.headers["redline-unknown-fields"].endswith(", and 8 more")
