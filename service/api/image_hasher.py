"""PDQ hashing of uploaded images in a child process, one image at a time, off the event loop.

Why a process and not a thread: `pdqhash.compute` holds the GIL for its whole C++ call (~5 ms
for the 512 × 512 image the reference hashes; ~8 ms with the luminance step), so a hashing
thread stalls the event loop — and every text `/check` and the Kafka stream on it — for that
long per image (measured: loop lag p99 8.6 ms while a thread hashes). A child process shares no
GIL. It also keeps the image codecs, which parse untrusted bytes, out of the serving process: a
codec that crashes or hangs on a hostile file takes down only the child, which is killed after
`timeout_seconds` or found dead, and started again (an image whose child died is tried once
more in a fresh child, then refused).

The child is `python -m service.api.image_hasher`, run with the process kit
(service.child_processes: a plain subprocess, not multiprocessing's spawn, which re-imports the
parent's main script and breaks when that script has no `__main__` guard), started on the first
image (~0.3 s: numpy, Pillow, pdqhash) and replaced at once, without backoff, when it died: a
hostile image must not delay the next one. Frames on its stdin/stdout: the image bytes in, a reply
out. Requests take turns through an asyncio lock, so at most one image is being decoded and memory
stays bounded by one decoded image (`service.media_hashing.MAX_IMAGE_PIXELS`); replicas add hashing
capacity. The lock is held only while hashing, never while a client is still sending its body;
the event loop waits for the reply without blocking.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from typing import Final

from service.child_processes import Child, ChildPipes, IncompleteFrame
from service.media_hashing import MAX_IMAGE_PIXELS, ImageError, ImageTooLarge, PdqHash, pdq_hash_image

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 10.0  # a 50 MP PNG takes ~1.5 s here; a codec stuck longer is killed
_STOP_SECONDS: Final = 2.0  # a child asked to stop (EOF) that has not exited after this is killed


class _HasherFailed(ImageError):
    """The child timed out or died on the image: counted as `failed`, not `refused`."""


class ImageHasher:
    """`await hash_images([bytes, ...])` → one `PdqHash` or `ImageError` per image, in order."""

    def __init__(self, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, max_pixels: int = MAX_IMAGE_PIXELS):
        self.timeout_seconds = timeout_seconds
        self.max_pixels = max_pixels
        self._lock = asyncio.Lock()
        self._child: Child | None = None
        # Imported here, not at the top: the child runs this module too, and prometheus_client with
        # the event models it pulls in would add ~12 MB and ~40 ms to every child for nothing.
        from service import metrics

        self._duration = metrics.image_hash_duration_seconds
        self._results = {result: metrics.images_hashed_total.labels(result) for result in metrics.IMAGE_HASH_RESULTS}

    @property
    def pid(self) -> int | None:
        """The child's process id while one is running."""
        child = self._child
        return child.pid if child is not None and child.running else None

    async def hash_images(self, images: Sequence[bytes]) -> list[PdqHash | ImageError]:
        async with self._lock:
            work = asyncio.ensure_future(self._hash_all(images))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The child is working on an image whose reply the next request must not read:
                # keep the lock until this one has it.
                await asyncio.wait({work})
                raise

    async def close(self) -> None:
        """Stop the child (if any). Safe to call more than once."""
        child, self._child = self._child, None
        if child is not None:
            await child.stop(_STOP_SECONDS)

    async def _hash_all(self, images: Sequence[bytes]) -> list[PdqHash | ImageError]:
        return [await self._hash_timed(data) for data in images]

    async def _hash_timed(self, data: bytes) -> PdqHash | ImageError:
        start = time.perf_counter()
        result = await self._hash_one(data)
        self._duration.observe(time.perf_counter() - start)
        self._results[_result_label(result)].inc()
        return result

    async def _hash_one(self, data: bytes) -> PdqHash | ImageError:
        # A child that died on this image dies again on the retry; one that was dead already (killed
        # for memory, or by hand, between images) is replaced and the image goes through.
        for _ in range(2):
            child = await self._started()
            child.send(data)
            try:
                reply = await asyncio.wait_for(child.receive(), self.timeout_seconds)
            except TimeoutError:
                await self._kill("timed out")
                return _HasherFailed(f"image took longer than {self.timeout_seconds:g} s to decode and hash")
            except IncompleteFrame:
                reply = None
            if reply is not None:
                break
            await self._kill("died")
        else:
            return _HasherFailed("the image decoder failed on this image")
        if "hex" in reply:
            return PdqHash(reply["hex"], int(reply["quality"]))
        error = ImageTooLarge if reply["kind"] == "too_large" else ImageError
        return error(reply["message"])

    async def _started(self) -> Child:
        child = self._child
        if child is not None and child.running:
            return child
        await self.close()  # a child found dead since the last image is replaced
        child = self._child = await Child.spawn("service.api.image_hasher", str(self.max_pixels))
        log.info("image hasher started", extra={"pid": child.pid})
        return child

    async def _kill(self, why: str) -> None:
        if self._child is not None:
            self._child.kill()
        log.warning("image hasher %s; it is restarted for the next image", why)
        await self.close()


def _result_label(result: PdqHash | ImageError) -> str:
    if isinstance(result, PdqHash):
        return "hashed" if result.usable else "low_quality"
    return "failed" if isinstance(result, _HasherFailed) else "refused"


def _reply(data: bytes, max_pixels: int) -> dict[str, object]:
    try:
        found = pdq_hash_image(data, max_pixels)
    except ImageTooLarge as exc:
        return {"kind": "too_large", "message": str(exc)}
    except ImageError as exc:
        return {"kind": "invalid", "message": str(exc)}
    except MemoryError:
        return {"kind": "too_large", "message": "image too large to decode in the memory available"}
    except Exception as exc:  # a codec error Pillow does not wrap: still the image's fault
        return {"kind": "invalid", "message": f"image could not be decoded ({type(exc).__name__})"}
    return {"hex": found.hex, "quality": found.quality}


def serve(pipes: ChildPipes, max_pixels: int) -> None:
    """The child's loop: images in, replies out, until EOF."""
    while (data := pipes.read()) is not None:
        if not pipes.write(_reply(data, max_pixels)):
            return  # the parent is gone


if __name__ == "__main__":  # pragma: no cover - the child process
    import warnings

    from PIL import Image

    # Pillow warns from 89 MP on; the pixel cap (lower) refuses those images anyway, and a
    # warning would land in the server's stderr, which carries JSON log lines.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    serve(ChildPipes.open(), int(sys.argv[1]))
