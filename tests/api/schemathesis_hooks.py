"""schemathesis hooks for the API tests (loaded via SCHEMATHESIS_HOOKS).

JSON Schema counts 576.0 as an integer; msgspec (and so both of Redline's doors) wants integers
written without a fraction, as every JSON encoder writes them. Generated bodies are rewritten to
that spelling; the value, and so whether the body is valid, does not change. Images sent to
`/check`: see `_real_images`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


# --- images. A schema can say "base64" (`format: byte`) and "binary" but not "decodes to an
# image": generated strings and bytes are (almost) never images, and the API answers 422 for
# them, as documented. So that the positive-data check still tests that valid requests are
# accepted, images in *positive* cases are real ones:
# - the only `byte`/`binary` fields of this API are images, so those formats generate a PNG;
# - the coverage phase also draws boundary strings (pattern- and length-valid, not images) and
#   applies no format strategy there: `before_call` swaps them for the PNG (JSON bodies; the
#   edit is revalidated by schemathesis and stays valid).
# Negative cases keep what was generated: wrong types and pattern violations are refused.
def _sample_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    pixels = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


_PNG = _sample_png()
_PNG_BASE64 = base64.b64encode(_PNG).decode()
schemathesis.openapi.format("byte", st.just(_PNG_BASE64))
schemathesis.openapi.format("binary", st.just(Binary(_PNG)))


def _real_image_in_event(event: Any) -> None:
    media = event.get("media") if isinstance(event, dict) else None
    if isinstance(media, dict) and isinstance(media.get("image"), str):
        media["image"] = _PNG_BASE64


# --- unknown fields. The schema lets events carry fields the contract does not know (they are
# ignored and named in a response header), except under `?strict=true`, which refuses them: a
# condition between a parameter and the body that JSON Schema cannot state. Positive cases that
# ask for strict mode therefore drop the unknown fields they generated.
def _known_fields_only(event: Any) -> None:
    import msgspec

    from service import events

    def names(struct: type[msgspec.Struct]) -> set[str]:
        return {f.encode_name for f in msgspec.structs.fields(struct)}

    if not isinstance(event, dict):
        return
    nested = {"chat": events.Chat, "sender": events.Sender, "payment": events.Payment, "media": events.Media,
              "file": events.File, "link": events.Link, "forward": events.Forward}
    for key in [k for k in event if k not in names(events.ChatEvent)]:
        del event[key]
    for key, struct in nested.items():
        inner = event.get(key)
        if isinstance(inner, dict):
            allowed = names(struct) | ({"image"} if key == "media" else set())
            for name in [k for k in inner if k not in allowed]:
                del inner[name]


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, **kwargs: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    strict = (case.query or {}).get("strict") in (True, "true")
    if case.media_type == "multipart/form-data" and strict and isinstance(case.body, dict):
        for name in [k for k in case.body if k not in ("image", "event")]:
            del case.body[name]  # strict also refuses parts the upload does not know
        part = case.body.get("event")  # the upload's event part, an object or its JSON text
        if isinstance(part, str):
            try:
                parsed = json.loads(part)
            except ValueError:
                return
            _known_fields_only(parsed)
            case.body["event"] = json.dumps(parsed)
        else:
            _known_fields_only(part)
        return
    if case.media_type != "application/json":
        return
    events = case.body if isinstance(case.body, list) else [case.body]
    for event in events:
        _real_image_in_event(event)
        if strict:
            _known_fields_only(event)


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    return _integral(body)

