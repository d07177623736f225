"""`POST /check` with an image (multipart upload, or base64 `media.image`): the server computes the
PDQ hash and the pack's hash banks judge it, over ASGI and over a real uvicorn server.

The bank holds hashes computed here with PyPI `pdqhash` directly (not through the server's code),
of images generated here: a photo-like image (smooth random structure + grain), and a flat grey
image whose hash PDQ marks with quality 0 — kept in the bank (no quality column) so that the
server *would* match it if it did not discard low-quality hashes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pdqhash
import pytest
from PIL import Image

from service.api.app import create_app
from service.api.image_hasher import ImageHasher
from service.engine.classifier import Engine
from service.rules.loader import load_pack
from service.runtime import Runtime
from service.settings import Settings
from tests.api.conftest import CHECK_KEY, LiveServer

RULE = "obscene_content.hash_bank"


def photo(seed: int, width: int = 320, height: int = 240) -> Image.Image:
    """A photo-like test image: bicubic-upsampled random blocks plus sensor-like grain."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(height // 24, width // 24, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    grain = rng.integers(-10, 11, size=smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def flat(width: int = 320, height: int = 240) -> Image.Image:
    return Image.new("RGB", (width, height), (118, 124, 131))


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pdq_of(image: Image.Image) -> tuple[str, int]:
    """The reference PDQ hash as 64 hex digits (images here are <= 512 px: no pre-resize)."""
    bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return f"{int(''.join('1' if b else '0' for b in bits), 2):064x}", int(quality)


TARGET = photo(seed=1)
TARGET_PNG = encode(TARGET, "PNG")
UNRELATED_JPEG = encode(photo(seed=2), "JPEG", quality=90)
FLAT_PNG = encode(flat(), "PNG")


@pytest.fixture(scope="module")
def image_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target_hash, target_quality = pdq_of(TARGET)
    flat_hash, flat_quality = pdq_of(flat())
    assert target_quality >= 50
    assert flat_quality < 50
    pack = tmp_path_factory.mktemp("image-pack")
    (pack / "banks").mkdir()
    (pack / "rules").mkdir()
    (pack / "banks" / "images.txt").write_text(f"{target_hash} target-photo 100\n{flat_hash} flat-grey\n")
    (pack / "pack.yaml").write_text(
        "name: images\nversion: '1.0'\n"
        "categories:\n  obscene_content: {description: obscene images}\n"
        "hash_banks:\n  images: {file: banks/images.txt}\n"
    )
    (pack / "rules" / "media.yaml").write_text(
        "rules:\n"
        f"  - id: {RULE}\n    category: obscene_content\n    severity: high\n    action: block\n"
        "    description: image near a banked hash\n    when: {media_hash: [images]}\n"
        "    examples:\n"
        f"      match:\n        - event: {{type: image, media: {{pdq: [{target_hash}]}}}}\n"
        "      no_match:\n        - a text message\n"
    )
    return pack


@pytest.fixture(scope="module")
def image_engine(image_pack: Path) -> Engine:
    return load_pack(image_pack)


ImageClient = Callable[..., Any]


@pytest.fixture
def image_client(image_pack: Path, image_engine: Engine) -> ImageClient:
    """An ASGI client for an app on the image pack, with settings overrides; stops its hasher."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(Runtime(settings=Settings(rules=image_pack, **overrides), engine=image_engine))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield client
        finally:
            await app.state.image_hasher.close()
            app.state.verdict_tally.flush()

    return make


def as_json(image: bytes, **event: Any) -> dict[str, Any]:
    return {**event, "media": {"image": base64.b64encode(image).decode()}}


def matched(verdict: dict[str, Any]) -> bool:
    return any(m["rule"] == RULE for m in verdict["matches"])


def header(response: httpx.Response) -> tuple[str, int, str]:
    """(hex, quality, rest) of the single Redline-Media-Pdq header."""
    (value,) = response.headers.get_list("redline-media-pdq")
    hex_hash, quality, *rest = value.split("; ")
    assert quality.startswith("quality=")
    return hex_hash, int(quality.removeprefix("quality=")), "; ".join(rest)


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "image", "expected"),
    [
        ("the banked image itself (lossless)", TARGET_PNG, True),
        ("re-encoded as JPEG quality 90", encode(TARGET, "JPEG", quality=90), True),
        ("re-encoded as JPEG quality 50", encode(TARGET, "JPEG", quality=50), True),
        ("re-encoded as JPEG quality 20", encode(TARGET, "JPEG", quality=20), True),
        ("re-encoded as WebP", encode(TARGET, "WEBP", quality=60), True),
        ("an unrelated photo", UNRELATED_JPEG, False),
    ],
)
async def test_uploaded_image_is_hashed_and_matched_against_the_bank(
    image_client: ImageClient, name: str, image: bytes, expected: bool
) -> None:
    async with image_client() as client:
        response = await client.post("/check", files={"image": ("photo", image)})
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert matched(verdict) is expected, (name, verdict)
    assert verdict["action"] == ("block" if expected else "allow")
    _, quality, rest = header(response)
    assert quality >= 50
    assert rest == ""
    if expected:
        (match,) = verdict["matches"]
        assert match["evidence"][0]["field"] == "media.pdq[0]"
        assert match["evidence"][0]["text"].startswith("target-photo d=")


async def test_computed_hash_is_the_reference_hash(image_client: ImageClient) -> None:
    async with image_client() as client:
        response = await client.post("/check", files={"image": ("photo.png", TARGET_PNG, "image/png")})
    assert header(response)[:2] == pdq_of(TARGET)


async def test_large_image_is_resized_like_the_reference_before_hashing(image_client: ImageClient) -> None:
    # pdqio.cpp: either side > 512 → 512 × 512 nearest neighbour, input pixel ⌊x · width / 512⌋.
    big = photo(seed=5, width=1500, height=1100)
    rows = np.arange(512) * 1100 // 512
    cols = np.arange(512) * 1500 // 512
    expected = pdq_of(Image.fromarray(np.asarray(big)[rows][:, cols]))
    async with image_client() as client:
        response = await client.post("/check", files={"image": ("big.png", encode(big, "PNG"))})
    assert header(response)[:2] == expected


async def test_flat_image_hash_has_low_quality_and_is_ignored(image_client: ImageClient) -> None:
    # The bank holds the flat image's exact hash: only discarding it keeps the verdict clean.
    async with image_client() as client:
        upload = await client.post("/check", files={"image": ("flat.png", FLAT_PNG)})
        posted = await client.post("/check", json=as_json(FLAT_PNG, id="flat"))
    for response in (upload, posted):
        assert response.status_code == 200, response.text
        assert response.json()["matches"] == []
        hex_hash, quality, rest = header(response)
        assert (hex_hash, quality) == pdq_of(flat())
        assert quality < 50
        assert rest == "ignored=low-quality"


async def test_base64_and_multipart_give_the_same_verdict(image_client: ImageClient) -> None:
    image = encode(TARGET, "JPEG", quality=80)
    event = {"id": "evt-img", "chat": {"id": "grp-1"}, "sender": {"id": "u-1"}, "text": "看看这个"}
    b64 = base64.b64encode(image).decode()
    url_safe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    async with image_client() as client:
        answers = [
            await client.post("/check", files={"image": ("a.jpg", image)}, data={"event": _json(event)}),
            await client.post("/check", json={**event, "media": {"image": b64}}),
            await client.post("/check", json={**event, "media": {"image": url_safe}}),
            await client.post("/check", json={**event, "media": {"image": "data:image/jpeg;base64," + wrapped}}),
        ]
    verdicts = [a.json() for a in answers]
    for answer, verdict in zip(answers, verdicts, strict=True):
        assert answer.status_code == 200, answer.text
        assert matched(verdict)
        assert verdict["event_id"] == "evt-img"
        assert header(answer) == header(answers[0])
    # Everything but the decision time is identical.
    assert len({_json({**v, "decided_at": None}) for v in verdicts}) == 1


async def test_upload_without_event_part_is_an_image_event_with_a_generated_id(image_client: ImageClient) -> None:
    async with image_client() as client:
        first = (await client.post("/check", files={"image": ("a.png", TARGET_PNG)})).json()
        second = (await client.post("/check", files={"image": ("a.png", TARGET_PNG)})).json()
    assert matched(first)  # media_hash holds only for image/video events
    assert len(first["event_id"]) == 36
    assert first["event_id"] != second["event_id"]


async def test_event_keeps_its_own_hashes_and_the_computed_one_is_appended(image_client: ImageClient) -> None:
    other, _ = pdq_of(photo(seed=9))
    event = {"id": "v1", "type": "video", "media": {"pdq": [other]}}
    async with image_client() as client:
        response = await client.post("/check", files={"image": ("f.png", TARGET_PNG)}, data={"event": _json(event)})
    (match,) = response.json()["matches"]
    assert [e["field"] for e in match["evidence"]] == ["media.pdq[1]"]  # the type stays video


async def test_batch_images_are_hashed_per_event(image_client: ImageClient) -> None:
    batch = [
        {"id": "t", "text": "hello"},
        as_json(encode(TARGET, "JPEG", quality=70), id="hit"),
        as_json(UNRELATED_JPEG, id="miss"),
    ]
    async with image_client() as client:
        response = await client.post("/check/batch", json=batch)
    assert response.status_code == 200, response.text
    assert [matched(v) for v in response.json()] == [False, True, False]
    headers = response.headers.get_list("redline-media-pdq")
    assert [h.rsplit("; ", 1)[1] for h in headers] == ["event=1", "event=2"]


async def test_text_events_get_no_header(image_client: ImageClient) -> None:
    async with image_client() as client:
        response = await client.post("/check", json={"id": "t", "text": "image of a cat"})
    assert response.status_code == 200
    assert "redline-media-pdq" not in response.headers


# --- refusals ---------------------------------------------------------------------------------


def _png_header(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def decompression_bomb() -> bytes:
    """A real bomb: a valid 8000 × 8000 greyscale PNG of zeros, ~62 KB, 64 MB decoded."""
    raw = zlib.compress(b"\0" * (8000 * 8001), 9)  # a filter byte per row
    return _png_header(8000, 8000, raw)


BOMB = decompression_bomb()


@pytest.mark.parametrize(
    ("name", "image", "error", "message"),
    [
        ("decompression bomb (64 MP, our cap)", BOMB, "image too large", "larger than 50,000,000 pixels"),
        # above twice Pillow's own limit its check refuses first; same answer
        ("header claiming 20000 × 20000", _png_header(20000, 20000, b""), "image too large", "decompression bomb"),
        ("not an image", b"%PDF-1.4 this is not an image", "invalid image", "not a JPEG, PNG, GIF, WebP or BMP image"),
        ("empty", b"", "invalid image", "not a JPEG, PNG, GIF, WebP or BMP image"),
        ("truncated JPEG", encode(TARGET, "JPEG")[:3000], "invalid image", "corrupt or truncated"),
        ("TIFF (not accepted)", encode(TARGET, "TIFF"), "invalid image", "not a JPEG, PNG, GIF, WebP or BMP image"),
    ],
)
async def test_images_that_cannot_be_hashed_are_422(
    image_client: ImageClient, name: str, image: bytes, error: str, message: str
) -> None:
    async with image_client() as client:
        upload = await client.post("/check", files={"image": ("x", image)})
        posted = await client.post("/check", json=as_json(image, id="x"))
    for response, path in ((upload, "$.image"), (posted, "$.media.image")):
        assert response.status_code == 422, (name, response.text)
        body = response.json()
        assert body["error"] == error
        (detail,) = body["detail"]
        assert detail["path"] == path
        assert message in detail["message"], detail


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc!def", "not base64: '!' at offset 3"),
        ("QUJD" * 10 + "Q", "cannot encode whole bytes"),
        ("QU=JD" * 10, "not base64: 'J' at offset 3"),
        ("图片" * 20, "not base64: '图' at offset 0"),
    ],
)
async def test_bad_base64_is_422_naming_the_character(image_client: ImageClient, text: str, message: str) -> None:
    async with image_client() as client:
        response = await client.post("/check/batch", json=[{"id": "a"}, {"id": "b", "media": {"image": text}}])
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["path"] == "$[1].media.image"
    assert message in detail["message"]


async def test_image_of_wrong_type_is_422(image_client: ImageClient) -> None:
    async with image_client() as client:
        response = await client.post("/check", json={"id": "a", "media": {"image": 12}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["path"] == "$.media.image"


async def test_oversize_images_are_413(image_client: ImageClient) -> None:
    limit = 4096
    image = encode(TARGET, "PNG")
    assert len(image) > limit
    async with image_client(max_image_bytes=limit) as client:
        upload = await client.post("/check", files={"image": ("big.png", image)})
        posted = await client.post("/check", json=as_json(image, id="big"))
        small = await client.post("/check", files={"image": ("f.png", encode(flat(32, 32), "PNG"))})
    for response in (upload, posted):
        assert response.status_code == 413
        assert response.json()["error"] == f"image larger than {limit} bytes"
    assert small.status_code == 200


async def test_upload_may_exceed_the_json_body_limit_but_not_image_plus_body(image_client: ImageClient) -> None:
    # An upload is bounded by max_image_bytes + max_body_bytes; a JSON body by max_body_bytes.
    image = TARGET_PNG
    async with image_client(max_body_bytes=4096, max_image_bytes=len(image) + 100) as client:
        upload = await client.post("/check", files={"image": ("a.png", image)})
        posted = await client.post("/check", json=as_json(image, id="a"))
    assert upload.status_code == 200, upload.text
    assert posted.status_code == 413
    assert posted.json()["error"] == "request body larger than 4096 bytes"
    async with image_client(max_body_bytes=4096, max_image_bytes=4096) as client:
        refused = await client.post("/check", files={"image": ("a.png", image)})
    assert refused.status_code == 413
    assert refused.json()["error"] == "request body larger than 8192 bytes"  # declared Content-Length


@pytest.mark.parametrize(
    ("name", "body", "content_type", "message"),
    [
        ("no image part", b"--b\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\n{}\r\n--b--\r\n",
         "multipart/form-data; boundary=b", "missing the `image` part"),
        ("two image parts", b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nx\r\n"
         b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\ny\r\n--b--\r\n",
         "multipart/form-data; boundary=b", "more than one `image` part"),
        ("no boundary", b"x", "multipart/form-data", "without a boundary"),
        ("cut short", b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nxyz",
         "multipart/form-data; boundary=b", "ends before its closing boundary"),
    ],
)
async def test_malformed_uploads_are_422(
    image_client: ImageClient, name: str, body: bytes, content_type: str, message: str
) -> None:
    async with image_client() as client:
        response = await client.post("/check", content=body, headers={"content-type": content_type})
    assert response.status_code == 422, name
    assert message in response.json()["detail"][0]["message"], response.text


async def test_invalid_event_part_is_422_with_its_path_under_event(image_client: ImageClient) -> None:
    async with image_client() as client:
        response = await client.post(
            "/check", files={"image": ("a.png", TARGET_PNG)}, data={"event": '{"chat": {"id": 7}}'}
        )
    assert response.status_code == 422
    assert response.json()["detail"] == [{"message": "Expected `str`, got `int`", "path": "$.event.chat.id"}]


async def test_batch_route_takes_no_uploads(image_client: ImageClient) -> None:
    async with image_client() as client:
        response = await client.post("/check/batch", files={"image": ("a.png", TARGET_PNG)})
    assert response.status_code == 415


async def test_uploads_need_a_key_and_are_rate_limited(image_client: ImageClient) -> None:
    async with image_client(api_keys=CHECK_KEY, rate_limit_per_second=0.01, rate_limit_burst=1) as client:
        anonymous = await client.post("/check", files={"image": ("a.png", TARGET_PNG)})
        auth = {"Authorization": f"Bearer {CHECK_KEY}"}
        first = await client.post("/check", files={"image": ("a.png", TARGET_PNG)}, headers=auth)
        second = await client.post("/check", files={"image": ("a.png", TARGET_PNG)}, headers=auth)
    assert anonymous.status_code == 401
    assert first.status_code == 200
    assert second.status_code == 429


# --- the hashing child process ------------------------------------------------------------------


async def test_hasher_kills_a_slow_child_and_starts_a_new_one() -> None:
    hasher = ImageHasher(timeout_seconds=0.001)
    try:
        (slow,) = await hasher.hash_images([encode(photo(seed=3, width=2000, height=1500), "PNG")])
        assert "took longer than 0.001 s" in str(slow)
        assert hasher.pid is None  # killed
        hasher.timeout_seconds = 30
        (found,) = await hasher.hash_images([TARGET_PNG])
        assert (found.hex, found.quality) == pdq_of(TARGET)  # type: ignore[union-attr]
    finally:
        await hasher.close()


async def test_hasher_replaces_a_child_that_died_between_images() -> None:
    hasher = ImageHasher()
    try:
        await hasher.hash_images([TARGET_PNG])
        pid = hasher.pid
        assert pid is not None
        os.kill(pid, 9)
        (found,) = await hasher.hash_images([TARGET_PNG])
        assert (found.hex, found.quality) == pdq_of(TARGET)  # type: ignore[union-attr]
        assert hasher.pid not in (None, pid)
    finally:
        await hasher.close()


async def test_a_cancelled_request_does_not_leave_its_reply_to_the_next() -> None:
    # The child still works on the cancelled request's image; the next request must wait for that
    # reply, or it would read the cancelled image's reply as its own.
    hasher = ImageHasher()
    try:
        await hasher.hash_images([TARGET_PNG])  # the child is up
        big = encode(photo(seed=4, width=3200, height=2400), "PNG")  # ~0.2-0.5 s to decode here
        slow = asyncio.create_task(hasher.hash_images([big]))
        await asyncio.sleep(0.05)
        slow.cancel()
        await asyncio.sleep(0.01)
        assert hasher._lock.locked()  # still the cancelled request's turn: its reply is on the way
        with pytest.raises(asyncio.CancelledError):
            await slow
        (found,) = await hasher.hash_images([TARGET_PNG])
        assert (found.hex, found.quality) == pdq_of(TARGET)  # type: ignore[union-attr]
    finally:
        await hasher.close()


# --- over real HTTP -------------------------------------------------------------------------------


def test_images_over_a_real_server(live_server: Callable[..., LiveServer], image_pack: Path) -> None:
    server = live_server(image_pack, REDLINE_MAX_IMAGE_BYTES=str(2 * 1024 * 1024))
    jpeg = encode(TARGET, "JPEG", quality=60)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        upload = client.post("/check", files={"image": ("a.jpg", jpeg, "image/jpeg")},
                             data={"event": _json({"id": "e1"})})
        posted = client.post("/check", json=as_json(jpeg, id="e1"))
        unrelated = client.post("/check", files={"image": ("b.jpg", UNRELATED_JPEG)})
        too_big = client.post("/check", files={"image": ("c.bin", os.urandom(2 * 1024 * 1024 + 1))})
        bomb = client.post("/check", files={"image": ("bomb.png", BOMB)})
        text = client.post("/check", json={"id": "t", "text": "hello"})
    assert upload.status_code == posted.status_code == 200
    assert matched(upload.json())
    assert {**upload.json(), "decided_at": None} == {**posted.json(), "decided_at": None}
    assert header(upload) == header(posted)
    assert not matched(unrelated.json())
    assert too_big.status_code == 413
    assert bomb.status_code == 422
    assert text.status_code == 200
    started = server.wait_for_log(lambda r: r.get("msg") == "image hasher started")
    assert server.stop() == 0
    with pytest.raises(ProcessLookupError):  # the child went with the server
        os.kill(int(started["pid"]), 0)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize(
    ("form", "path"),
    [
        ({"event": _json({"id": "u1", "txt": "hi"})}, "$.event.txt"),  # a field of the event part
        ({"evnt": _json({"id": "u2", "text": "机密"})}, "$.evnt"),  # a misspelled part: not dropped unseen
    ],
)
async def test_an_upload_names_what_it_does_not_know(
    image_client: ImageClient, form: dict[str, str], path: str
) -> None:
    async with image_client() as client:
        named = await client.post("/check", files={"image": ("a.png", TARGET_PNG)}, data=form)
        assert named.status_code == 200
        assert named.headers["redline-unknown-fields"] == path
        strict = await client.post("/check?strict=true", files={"image": ("a.png", TARGET_PNG)}, data=form)
        assert strict.status_code == 422
        assert [d["path"] for d in strict.json()["detail"]] == [path]
