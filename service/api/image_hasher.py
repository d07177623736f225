"""PDQ hashing of uploaded images in a child process, one image at a time, off the event loop.

Why a process and not a thread: `pdqhash.compute` holds the GIL for its whole C++ call (~5 ms
for the 512 × 512 image the reference hashes; ~8 ms with the luminance step), so a hashing
thread stalls the event loop — and every text `/check` and the Kafka stream on it — for that
long per image (measured: loop lag p99 8.6 ms while a thread hashes). A child process shares no
GIL. It also keeps the image codecs, which parse untrusted bytes, out of the serving process: a
codec that crashes or hangs on a hostile file takes down only the child, which is killed after
`timeout_seconds` or found dead, and started again (an image whose child died is tried once
more in a fresh child, then refused).

The child is `python -m service.api.image_hasher` (a plain subprocess, not multiprocessing's
spawn, which re-imports the parent's main script and breaks when that script has no
`__main__` guard), started on the first image (~0.3 s: numpy, Pillow, pdqhash). Protocol on its
stdin/stdout: an 8-byte big-endian length and the image bytes in; one JSON line out. Requests
take turns through an asyncio lock, so at most one image is being decoded and memory stays
bounded by one decoded image (`service.media_hashing.MAX_IMAGE_PIXELS`); replicas add hashing
capacity. The lock is held only while hashing, never while a client is still sending its body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Final

from service.media_hashing import MAX_IMAGE_PIXELS, ImageError, ImageTooLarge, PdqHash, pdq_hash_image

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 10.0  # a 50 MP PNG takes ~1.5 s here; a codec stuck longer is killed
_LENGTH_BYTES: Final = 8


class _HasherFailed(ImageError):
    """The child timed out or died on the image: counted as `failed`, not `refused`."""


class ImageHasher:
    """`await hash_images([bytes, ...])` → one `PdqHash` or `ImageError` per image, in order."""

    def __init__(self, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, max_pixels: int = MAX_IMAGE_PIXELS):
        self.timeout_seconds = timeout_seconds
        self.max_pixels = max_pixels
        self._lock = asyncio.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        # Imported here, not at the top: the child runs this module too, and prometheus_client with
        # the event models it pulls in would add ~12 MB and ~40 ms to every child for nothing.
        from service import metrics

        self._duration = metrics.image_hash_duration_seconds
        self._results = {result: metrics.images_hashed_total.labels(result) for result in metrics.IMAGE_HASH_RESULTS}

    @property
    def pid(self) -> int | None:
        """The child's process id while one is running."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    async def hash_images(self, images: Sequence[bytes]) -> list[PdqHash | ImageError]:
        async with self._lock:
            # The pipe I/O waits in a thread (without the GIL); the loop stays free.
            work = asyncio.ensure_future(asyncio.to_thread(self._hash_all, images))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread cannot be stopped and still owns the pipe: keep the lock until it is done.
                await asyncio.wait({work})
                raise

    def close(self) -> None:
        """Stop the child (if any). Safe to call more than once."""
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.close()  # the child reads EOF and exits
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()

    def _hash_all(self, images: Sequence[bytes]) -> list[PdqHash | ImageError]:
        return [self._hash_timed(data) for data in images]

    def _hash_timed(self, data: bytes) -> PdqHash | ImageError:
        start = time.perf_counter()
        result = self._hash_one(data)
        self._duration.observe(time.perf_counter() - start)
        self._results[_result_label(result)].inc()
        return result

    def _hash_one(self, data: bytes) -> PdqHash | ImageError:
        # A child that died on this image dies again on the retry; one that was dead already (killed
        # for memory, or by hand, between images) is replaced and the image goes through.
        for _ in range(2):
            line = self._roundtrip(data)
            if line is None:
                return _HasherFailed(f"image took longer than {self.timeout_seconds:g} s to decode and hash")
            if line:
                break
            self._kill("died")
        else:
            return _HasherFailed("the image decoder failed on this image")
        reply = json.loads(line)
        if "hex" in reply:
            return PdqHash(reply["hex"], int(reply["quality"]))
        error = ImageTooLarge if reply["kind"] == "too_large" else ImageError
        return error(reply["message"])

    def _roundtrip(self, data: bytes) -> bytes | None:
        """The child's reply line; b"" if the child is gone; None (child killed) on timeout."""
        child = self._started()
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            child.stdin.write(len(data).to_bytes(_LENGTH_BYTES, "big"))
            child.stdin.write(data)
            child.stdin.flush()
            readable, _, _ = select.select([child.stdout], [], [], self.timeout_seconds)
            if not readable:
                self._kill("timed out")
                return None
            return child.stdout.readline()
        except OSError:  # BrokenPipeError: the child is gone
            return b""

    def _started(self) -> subprocess.Popen[bytes]:
        child = self._child
        if child is not None and child.poll() is None:
            return child
        self.close()  # a child found dead since the last image is replaced
        child = subprocess.Popen(
            [sys.executable, "-m", "service.api.image_hasher", str(self.max_pixels)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._child = child
        log.info("image hasher started", extra={"pid": child.pid})
        return child

    def _kill(self, why: str) -> None:
        if self._child is not None:
            self._child.kill()
        log.warning("image hasher %s; it is restarted for the next image", why)
        self.close()


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


def serve(requests: IO[bytes], replies: IO[bytes], max_pixels: int) -> None:
    """The child's loop: length-prefixed images in, JSON lines out, until EOF."""
    while True:
        header = requests.read(_LENGTH_BYTES)
        if len(header) < _LENGTH_BYTES:
            return
        data = requests.read(int.from_bytes(header, "big"))
        replies.write(json.dumps(_reply(data, max_pixels)).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":  # pragma: no cover - the child process
    import warnings

    from PIL import Image

    # Pillow warns from 89 MP on; the pixel cap (lower) refuses those images anyway, and a
    # warning would land in the server's stderr, which carries JSON log lines.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    serve(sys.stdin.buffer, sys.stdout.buffer, int(sys.argv[1]))
