"""The image-hashing metrics: one `redline_images_hashed_total{result}` increment and one
`redline_image_hash_duration_seconds` observation per image, through a real hashing child."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from service.api.image_hasher import ImageHasher
from service.metrics import IMAGE_HASH_RESULTS


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


_NOISE = _png(Image.fromarray(np.random.default_rng(7).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)))
_FLAT = _png(Image.new("RGB", (128, 96), (118, 124, 131)))


def _counts() -> dict[str, float]:
    found = {result: REGISTRY.get_sample_value("redline_images_hashed_total", {"result": result})
             for result in IMAGE_HASH_RESULTS}
    assert None not in found.values()  # pre-initialised: every result exists before its first image
    return {result: value or 0.0 for result, value in found.items()}


def _observations() -> float:
    return REGISTRY.get_sample_value("redline_image_hash_duration_seconds_count") or 0.0


@pytest.mark.parametrize(
    ("images", "timeout_seconds", "expected"),
    [
        ([_NOISE], 10.0, {"hashed": 1}),  # a detailed image: quality 100, used
        ([_FLAT], 10.0, {"low_quality": 1}),  # flat grey: PDQ quality 0, not used
        ([b"GIF89a but not really"], 10.0, {"refused": 1}),  # the decoder refuses it
        ([_NOISE, b"not an image", _FLAT], 10.0, {"hashed": 1, "refused": 1, "low_quality": 1}),  # one each
        ([_NOISE], 0.001, {"failed": 1}),  # the child cannot even start in 1 ms: killed, counted as failed
    ],
)
async def test_each_image_is_counted_once_by_result_and_timed(
    images: list[bytes], timeout_seconds: float, expected: dict[str, int]
) -> None:
    hasher = ImageHasher(timeout_seconds=timeout_seconds)
    before, observed_before = _counts(), _observations()
    try:
        await hasher.hash_images(images)
    finally:
        await hasher.close()
    after = _counts()
    assert {r: after[r] - before[r] for r in IMAGE_HASH_RESULTS if after[r] != before[r]} == expected
    assert _observations() - observed_before == len(images)
