"""Image bytes → PDQ hash and quality, the way Meta's reference hasher computes them.

    RedlineError
    └── ImageError            the bytes are not an image Redline hashes (reason in the message)
        └── ImageTooLarge     declared dimensions above the pixel cap (a decompression bomb)

Not part of the engine: decoding runs image codecs on untrusted bytes, costs milliseconds, and
is bounded by policy (formats, pixels). The API calls it in a worker thread; the engine only
ever sees the resulting hex hashes in `media.pdq`, exactly as when the sender hashed the image.

What the reference (ThreatExchange `pdq/cpp/io/pdqio.cpp`) does and this repeats: an image with
either side above 512 pixels is first resized to 512 × 512 (aspect ratio not kept) by CImg's
default nearest-neighbour resize, whose output pixel x reads input pixel ⌊x · width / 512⌋; then
`pdqHash256FromFloatLuma` (here via PyPI `pdqhash`, the reference C++ compiled) hashes the
luminance. Matching the reference matters because banks are shared between organisations that
hash with it. The resize is Pillow's affine NEAREST transform shifted by half a source pixel,
which samples exactly those pixels (checked for every width 513–8999) and never copies the
full-size image to numpy. No EXIF rotation is applied (the reference applies none).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from service.errors import RedlineError

PDQ_MIN_QUALITY: Final = 50  # PDQ: "we recommend discarding hashes" with quality <= 49
REFERENCE_SIDE: Final = 512  # pdqio.cpp DOWNSAMPLE_DIMS
# Declared width × height above this is refused before decoding. 50 MP covers the largest phone
# photos; a decoded RGB image takes 4 bytes per pixel in Pillow (200 MB at the cap).
MAX_IMAGE_PIXELS: Final = 50_000_000
# Formats of images sent in chats. Pillow can open many more (EPS runs Ghostscript, TIFF and
# the rarer codecs have had most of its CVEs): an untrusted upload gets only these parsers.
FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
FORMAT_NAMES: Final = "JPEG, PNG, GIF, WebP or BMP"


class ImageError(RedlineError):
    """The bytes are not an image Redline hashes; the message says why."""


class ImageTooLarge(ImageError):
    """The image declares more pixels than the cap."""


@dataclass(frozen=True, slots=True)
class PdqHash:
    hex: str  # 64 hex digits, most significant bit first (the reference's `Hash256::format`)
    quality: int  # 0-100

    @property
    def usable(self) -> bool:
        """Whether PDQ would trust this hash for matching (quality >= 50)."""
        return self.quality >= PDQ_MIN_QUALITY


def pdq_hash_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> PdqHash:
    """The PDQ hash of the image in `data` (its first frame); raises `ImageError` for anything else."""
    image = _open(data, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError as exc:  # a frame larger than the header said
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # Pillow's ways of saying "corrupt"
        raise ImageError(f"{image.format} image data is corrupt or truncated: {exc}") from exc
    width, height = image.size
    if width > REFERENCE_SIDE or height > REFERENCE_SIDE:
        image = _reference_resize(image)
    if image.mode != "RGB":
        # Palette images with a transparent index must go through RGBA to convert cleanly;
        # dropping alpha then keeps the colour channels, as the reference reads them.
        image = image.convert("RGBA" if image.mode == "P" else "RGB").convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(image))
    return PdqHash(np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:  # above twice Pillow's own limit: its check runs first
        raise ImageTooLarge(str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"not a {FORMAT_NAMES} image") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"image header is corrupt: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image of {width}×{height} pixels is larger than {max_pixels:,} pixels")
    if width == 0 or height == 0:
        raise ImageError(f"image of {width}×{height} pixels is empty")
    return image


def _reference_resize(image: Image.Image) -> Image.Image:
    """512 × 512 by nearest neighbour, output x from input ⌊x · width / 512⌋ (CImg's resize).

    Pillow's affine transform samples input (a·(x + ½) + c); with a = width / 512 and c = −a/2
    that is a·x, floored by NEAREST.
    """
    if image.mode not in ("1", "L", "P", "RGB", "RGBA", "RGBX", "I", "F", "LA", "PA", "CMYK"):
        image = image.convert("RGB")  # e.g. I;16 or YCbCr: transform supports fewer modes
    sx = image.width / REFERENCE_SIDE
    sy = image.height / REFERENCE_SIDE
    return image.transform(
        (REFERENCE_SIDE, REFERENCE_SIDE),
        Image.Transform.AFFINE,
        (sx, 0.0, -sx / 2, 0.0, sy, -sy / 2),
        resample=Image.Resampling.NEAREST,
    )
