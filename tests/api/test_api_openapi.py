"""The OpenAPI document: every route, its schemas (from the msgspec types), limits and examples."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.events import decode_adhoc_event
from tests.api.conftest import ClientFactory

ROUTES = [
    ("/check", "post"), ("/check/batch", "post"), ("/rules", "get"), ("/rules/reload", "post"),
    ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
]


@pytest.fixture
async def document(make_client: ClientFactory) -> dict[str, Any]:
    async with make_client(max_text_chars=1234, max_batch_events=7) as client:
        doc: dict[str, Any] = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 200
        return doc


def test_every_route_is_documented_with_examples(document: dict[str, Any]) -> None:
    assert set(document["paths"]) == {path for path, _ in ROUTES}
    for path, method in ROUTES:
        operation = document["paths"][path][method]
        assert operation["summary"]
        for status, response in operation["responses"].items():
            [(media_type, content)] = response["content"].items()
            assert "example" in content or "examples" in content, (path, status, media_type)


def test_check_schemas_come_from_the_wire_models(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    check = document["paths"]["/check"]["post"]
    body = check["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/AdHocEvent"}
    assert check["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Verdict"
    }
    assert {"422", "413", "415"} <= set(check["responses"])
    # The configured limits are stated in the schema.
    assert schemas["AdHocEvent"]["properties"]["text"]["maxLength"] == 1234
    assert schemas["AdHocEventBatch"]["maxItems"] == 7
    assert set(schemas["Verdict"]["required"]) >= {"event_id", "action", "severity", "matches", "ruleset"}
    # Request examples are real, decodable events.
    for example in body["examples"].values():
        decode_adhoc_event(httpx.Request("POST", "/", json=example["value"]).content)


def test_schema_refs_resolve(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.removeprefix("#/components/schemas/") in names, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
