"""The OpenAPI document: schemas derived from the msgspec types the routes really decode and send.

The hot routes take the raw body (FastAPI validates nothing there), so their request and response
schemas are attached here via `openapi_extra`, from `msgspec.json.schema_components`, with the
configured limits written into the schemas (maxLength, maxItems) so a schema-driven client such
as schemathesis knows exactly what is accepted. Security requirements are added only for the
routes the configured keys actually guard. `media.image` (base64 image, HTTP only) is added to
the `Media` schema here: the wire model has no such field, the API reads it (see image_input.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.asgi_route import document_asgi_routes
from service.api.auth import Access, Endpoint
from service.api.image_input import BASE64_IMAGE_PATTERN
from service.api.limits import Limits
from service.api.schemas import ErrorBody, Health, Readiness, ReloadResult, RulesView
from service.events import AdHocEvent, Verdict
from service.media_hashing import FORMAT_NAMES, MAX_IMAGE_PIXELS, PDQ_MIN_QUALITY

JsonObject = dict[str, Any]

_REF: Final = "#/components/schemas/{name}"
SECURITY_SCHEME: Final = "bearerKey"


def _ref(name: str) -> JsonObject:
    return {"$ref": _REF.format(name=name)}


# --- examples (requests are replayed by schemathesis, so they must be valid events)
EVENT_EXAMPLES: Final[JsonObject] = {
    "text": {
        "summary": "A text message in a work group",
        "value": {
            "id": "evt-0001",
            "chat": {"id": "grp-42", "kind": "group", "members": 35},
            "sender": {"id": "u-1001", "roles": ["official"]},
            "sent_at": "2025-03-01T09:30:00+08:00",
            "text": "这是内部资料，请勿外传",
        },
    },
    "red_packet": {
        "summary": "A red packet received by an official (no id: the server assigns one)",
        "value": {
            "type": "red_packet",
            "chat": {"id": "grp-42"},
            "sender": {"id": "u-1001", "roles": ["official"]},
            "payment": {"amount": 200, "currency": "CNY", "direction": "receive"},
            "text": "辛苦了",
        },
    },
    "forward": {
        "summary": "A widely shared forward",
        "value": {
            "id": "evt-0003",
            "chat": {"id": "grp-7"},
            "text": "听说下周要停水三天，赶紧转发",
            "forward": {"origin_id": "m-9", "shares": 800, "views": 12000},
        },
    },
}

_RULESET_EXAMPLE: Final = {"name": "redlines", "version": "2025.1", "digest": "sha256:3b1f…"}

VERDICT_EXAMPLE: Final[JsonObject] = {
    "event_id": "evt-0001",
    "action": "block",
    "severity": "high",
    "matches": [
        {
            "rule": "secret_leak.marking",
            "category": "secret_leak",
            "severity": "high",
            "action": "block",
            "shadow": False,
            "evidence": [{"field": "text", "start": 2, "end": 6, "text": "内部资料"}],
            "reason": "secrecy marking in a group chat",
        }
    ],
    "ruleset": _RULESET_EXAMPLE,
    "decided_at": "2025-03-01T01:30:00.012345Z",
}

ALLOW_EXAMPLE: Final[JsonObject] = {
    "event_id": "3f0c2a4e-2b7e-4a8b-9a55-0c1f7d1f2d10",
    "action": "allow",
    "severity": "none",
    "matches": [],
    "ruleset": _RULESET_EXAMPLE,
    "decided_at": "2025-03-01T01:30:00.013001Z",
}


def _error(description: str, example: JsonObject) -> JsonObject:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("ErrorBody"), "example": example}},
    }


_INVALID_EVENT: Final = _error(
    "Malformed JSON or not a ChatEvent; `path` names the offending field.",
    {"error": "invalid event", "detail": [{"message": "Expected `str`, got `int`", "path": "$.chat.id"}]},
)
_UNSUPPORTED: Final = _error(
    "The body is not declared as JSON.", {"error": "Content-Type must be application/json", "detail": []}
)
_UNSUPPORTED_CHECK: Final = _error(
    "The body is declared neither as JSON nor as multipart/form-data.",
    {"error": "Content-Type must be application/json or multipart/form-data", "detail": []},
)
_INVALID_CHECK: Final = _error(
    "Malformed JSON, not a ChatEvent, an image that cannot be hashed (bad base64, not a "
    f"{FORMAT_NAMES} image, corrupt, more than {MAX_IMAGE_PIXELS:,} pixels), or a malformed "
    "upload; `path` names the field (`$.media.image`) or form part (`$.image`, `$.event.chat.id`).",
    {"error": "invalid image", "detail": [{"message": "not a JPEG, PNG, GIF, WebP or BMP image",
                                           "path": "$.media.image"}]},
)
PDQ_HEADER_NAME: Final = "Redline-Media-Pdq"
_UNKNOWN_FIELDS_HEADER: Final = {
    "Redline-Unknown-Fields": {
        "description": "Present when the event (or a batch item) had fields the contract does not "
        "know: their JSON paths, comma-separated. They were ignored; the verdict is what it would be "
        "without them.",
        "schema": {"type": "string"},
        "example": "$.txt, $.chat.kindd",
    }
}
_PDQ_HEADERS: Final = {
    PDQ_HEADER_NAME: {
        "description": "One per image hashed for this request (absent for requests without images): "
        "`<64 hex digits>; quality=<0-100>`, then `; event=<index>` on `/check/batch`, and "
        f"`; ignored=low-quality` when the quality is below {PDQ_MIN_QUALITY} (the hash was then not "
        "added to `media.pdq`).",
        "schema": {"type": "string",
                   "pattern": r"^[0-9a-f]{64}; quality=\d{1,3}(; event=\d+)?(; ignored=low-quality)?$"},
        "example": "f8f8e0e0c0c0e0f0a0b0c0d0e0f00010f8f8e0e0c0c0e0f0a0b0c0d0e0f00010; quality=100",
    }
}


def _too_large(what: str) -> JsonObject:
    return _error(what, {"error": "request body larger than 1048576 bytes", "detail": []})


def _json_body(schema: JsonObject, examples: JsonObject) -> JsonObject:
    return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}


def _json_ok(description: str, schema: JsonObject, examples: JsonObject) -> JsonObject:
    return {"description": description, "content": {"application/json": {"schema": schema, "examples": examples}}}


def _upload_body() -> JsonObject:
    return {
        "schema": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": f"The image file: {FORMAT_NAMES}, at most `max_image_bytes`."},
                "event": {**_ref("UploadEvent"),
                          "description": "The ChatEvent the image belongs to (JSON), as on the wire: "
                          "`media.image` is not read here. Absent: an `image` event with a generated id."},
            },
        },
        "encoding": {"event": {"contentType": "application/json"}},
    }


def check_operation() -> JsonObject:
    body = _json_body(_ref("AdHocEvent"), EVENT_EXAMPLES)
    body["content"]["multipart/form-data"] = _upload_body()
    ok = _json_ok(
        "The verdict, exactly as the stream would publish it for this event and pack.",
        _ref("Verdict"),
        {"block": {"value": VERDICT_EXAMPLE}, "allow": {"value": ALLOW_EXAMPLE}},
    )
    ok["headers"] = _PDQ_HEADERS | _UNKNOWN_FIELDS_HEADER
    return {
        "requestBody": body,
        "responses": {
            "200": ok,
            "413": _too_large("A JSON body larger than `max_body_bytes`, an upload larger than `max_image_bytes` + "
                              "`max_body_bytes`, or an image larger than `max_image_bytes`."),
            "415": _UNSUPPORTED_CHECK,
            "422": _INVALID_CHECK,
        },
    }


def check_batch_operation() -> JsonObject:
    batch = [EVENT_EXAMPLES["text"]["value"], EVENT_EXAMPLES["red_packet"]["value"]]
    ok = _json_ok(
        "One verdict per event, in request order.",
        {"type": "array", "items": _ref("Verdict")},
        {"two_verdicts": {"value": [VERDICT_EXAMPLE, ALLOW_EXAMPLE]}},
    )
    ok["headers"] = _PDQ_HEADERS | _UNKNOWN_FIELDS_HEADER
    return {
        "requestBody": _json_body(
            {"$ref": _REF.format(name="AdHocEventBatch")},
            {"two_events": {"summary": "Two events, verdicts come back in order", "value": batch}},
        ),
        "responses": {
            "200": ok,
            "413": _too_large("The body is larger than `max_body_bytes`, or an image larger than `max_image_bytes`."),
            "415": _UNSUPPORTED,
            "422": _error(
                "Malformed JSON, not an array, more than `max_batch_events` items, an item is not a "
                "ChatEvent (`path` like `$[3].chat.id`), or an item's `media.image` cannot be hashed.",
                {"error": "invalid event", "detail": [{"message": "Object missing required field `id`",
                                                       "path": "$[1].chat"}]},
            ),
        },
    }


def rules_operation() -> JsonObject:
    example = {
        **_RULESET_EXAMPLE,
        "categories": {"secret_leak": "leaking state secrets or internal documents"},
        "rules": [{"id": "secret_leak.marking", "category": "secret_leak", "severity": "high",
                   "action": "block", "shadow": False, "reason": "secrecy marking in a group chat"}],
    }
    return {"responses": {"200": _json_ok("The serving pack.", _ref("RulesView"), {"pack": {"value": example}})}}


def reload_operation() -> JsonObject:
    ok = {"ruleset": _RULESET_EXAMPLE, "previous_digest": "sha256:9a0e…", "changed": True, "rules": 42,
          "seconds": 0.84}
    refused = {
        "error": "rule pack refused",
        "detail": [{"file": "rules/secret_leak.yaml", "line": 12, "message": "unknown category 'secrets'"}],
    }
    return {
        "responses": {
            "200": _json_ok("The new pack is serving.", _ref("ReloadResult"), {"reloaded": {"value": ok}}),
            "422": _error("The pack was refused (every issue listed); the old pack keeps serving.", refused),
        }
    }


def health_operation() -> JsonObject:
    return {"responses": {"200": _json_ok("The process is alive.", _ref("Health"),
                                          {"ok": {"value": {"status": "ok"}}})}}


def ready_operation() -> JsonObject:
    ready = _json_ok("Ready to serve.", _ref("Readiness"), {"ready": {"value": {"ready": True, "reasons": []}}})
    not_ready = _json_ok(
        "Not ready; `reasons` says why.",
        _ref("Readiness"),
        {"not_ready": {"value": {"ready": False,
                                 "reasons": ["stream not connected or no partitions assigned"]}}},
    )
    return {"responses": {"200": ready, "503": not_ready}}


def metrics_operation() -> JsonObject:
    text = "# HELP redline_events_classified_total Events classified by the engine.\n"
    return {
        "responses": {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}, "example": text}},
            }
        }
    }


def _components(limits: Limits) -> JsonObject:
    _, schemas = msgspec.json.schema_components(
        [AdHocEvent, Verdict, ErrorBody, RulesView, ReloadResult, Health, Readiness], ref_template=_REF
    )
    schemas = copy.deepcopy(schemas)
    # The event structs forbid unknown fields only to notice them: the routes accept them, name
    # them in the Redline-Unknown-Fields header, and refuse them only under `?strict=true`.
    for name in ("AdHocEvent", "Chat", "Sender", "Payment", "Media", "File", "Link", "Forward"):
        schemas[name].pop("additionalProperties", None)
    # The limits the routes enforce, stated where a client can see them.
    schemas["AdHocEvent"]["properties"]["text"]["maxLength"] = limits.events.max_text_chars
    schemas["File"]["properties"]["name"]["maxLength"] = limits.events.max_text_chars
    schemas["Link"]["properties"]["url"]["maxLength"] = limits.events.max_text_chars
    schemas["Media"]["properties"]["pdq"]["maxItems"] = limits.events.max_media_hashes
    # The `event` part of an upload is a ChatEvent exactly as on the wire: its Media has no
    # `image` (the image is the `image` part), so it is described before `image` is added below.
    schemas["UploadMedia"] = {**copy.deepcopy(schemas["Media"]), "title": "UploadMedia"}
    upload_event = copy.deepcopy(schemas["AdHocEvent"])
    upload_event["title"] = "UploadEvent"
    upload_event["properties"]["media"]["anyOf"][0] = _ref("UploadMedia")
    schemas["UploadEvent"] = upload_event
    base64_image = {
        "type": "string",
        "format": "byte",  # OpenAPI's name for base64 text
        "minLength": 32,  # no accepted image is shorter than 26 bytes (36 base64 digits)
        "contentEncoding": "base64",
        "contentMediaType": "image/*",
        "pattern": BASE64_IMAGE_PATTERN,
    }
    schemas["Media"]["properties"]["image"] = {
        "anyOf": [base64_image, {"type": "null"}],  # null: no image, as msgspec reads it
        "description": f"HTTP only: a {FORMAT_NAMES} image in base64 (standard or URL-safe, padding optional, "
        "`data:image/...;base64,` prefix allowed), at most `max_image_bytes` decoded. The server computes "
        f"its PDQ hash and appends it to `pdq` when its quality is >= {PDQ_MIN_QUALITY}; `type` `text` "
        "becomes `image`. The Kafka stream ignores this field.",
    }
    schemas["AdHocEventBatch"] = {
        "title": "AdHocEventBatch",
        "type": "array",
        "items": _ref("AdHocEvent"),
        "maxItems": limits.max_batch_events,
    }
    return dict(schemas)


def _add_auth_responses(responses: JsonObject, level: Access) -> None:
    responses["401"] = _error(
        "Missing or unknown bearer key.", {"error": "missing or unknown bearer key", "detail": []}
    )
    if level is Access.ADMIN:
        responses["403"] = _error(
            "The key is valid but not an admin key.", {"error": "this route needs an admin key", "detail": []}
        )


def install_openapi(app: FastAPI, limits: Limits, protected: Mapping[Endpoint, Access]) -> None:
    """Build the document once, on first request, with components and the guarded routes' security."""

    def openapi() -> JsonObject:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        document_asgi_routes(document, app.routes)  # the hot routes are plain ASGI: not FastAPI's
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(_components(limits))
        if protected:
            components["securitySchemes"] = {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer",
                                  "description": "A check key, or an admin key for admin routes."}
            }
        for (method, path), level in protected.items():
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{SECURITY_SCHEME: []}]
                _add_auth_responses(operation.setdefault("responses", {}), level)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
