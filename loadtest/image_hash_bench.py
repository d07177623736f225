"""Cost of hashing one image for `POST /check`, and what hashing does to the event loop.

    .venv/bin/python -m loadtest.image_hash_bench              # ~1 min
    .venv/bin/python -m loadtest.image_hash_bench --runs 5 --lag-images 40

1. Per image, `service.media_hashing.pdq_hash_image` (decode → reference resize → PDQ) in this
   process, median of `--runs`, for a 1 MP and a 12 MP photo-like image (generated: bicubic
   upsampled random blocks plus grain, so the codecs see texture, not flat colour), as JPEG
   (quality 90) and PNG; then the same through `ImageHasher` (the child process the API uses),
   which adds the pipe round trip.
2. Event-loop lag while `--lag-images` 1 MP JPEGs are hashed back to back, once in a thread
   (`asyncio.to_thread`) and once through `ImageHasher`: a task sleeping 1 ms in a loop records
   how late it wakes (p50 / p99 / max). The loop is what serves text `/check` and the stream.

Everything runs on this machine, no network. Figures go to docs/api.md ("Images").
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Awaitable, Callable

import numpy as np
from PIL import Image

from service.api.image_hasher import ImageHasher
from service.media_hashing import pdq_hash_image

SIZES = {"1 MP": (1155, 866), "12 MP": (4000, 3000)}


def photo(width: int, height: int, seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(height // 48, width // 48, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    grain = rng.integers(-10, 11, size=smooth.shape, dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


async def loop_lag(work: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """(p50, p99, max) ms by which a 1 ms sleeper wakes late while `work` runs."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            start = loop.time()
            await asyncio.sleep(0.001)
            lags.append((loop.time() - start - 0.001) * 1e3)

    task = asyncio.create_task(ticker())
    await work()
    done.set()
    await task
    lags.sort()
    return lags[len(lags) // 2], lags[int(len(lags) * 0.99)], lags[-1]


async def main_async(runs: int, lag_images: int) -> None:
    hasher = ImageHasher(timeout_seconds=60)
    try:
        print(f"per image, median of {runs} (ms):")
        print("| image | bytes | in-process | via child process |")
        print("|---|---|---|---|")
        for label, (width, height) in SIZES.items():
            image = photo(width, height)
            for fmt in ("JPEG", "PNG"):
                data = encode(image, fmt)
                local: list[float] = []
                child: list[float] = []
                await hasher.hash_images([data])  # start the child, warm its caches
                for _ in range(runs):
                    started = time.perf_counter()
                    pdq_hash_image(data)
                    local.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await hasher.hash_images([data])
                    child.append(time.perf_counter() - started)
                print(f"| {label} {fmt} {width}×{height} | {len(data):,} | {median_ms(local):.1f} "
                      f"| {median_ms(child):.1f} |")

        jpeg = encode(photo(*SIZES["1 MP"]), "JPEG")

        async def in_thread() -> None:
            for _ in range(lag_images):
                await asyncio.to_thread(pdq_hash_image, jpeg)

        async def in_child() -> None:
            for _ in range(lag_images):
                await hasher.hash_images([jpeg])

        async def idle() -> None:
            await asyncio.sleep(1.0)

        print(f"\nevent-loop lag while hashing {lag_images} × 1 MP JPEG back to back (ms, p50 / p99 / max):")
        for name, work in (("idle (1 s)", idle), ("thread", in_thread), ("child process", in_child)):
            p50, p99, worst = await loop_lag(work)
            print(f"  {name:14} {p50:6.2f} / {p99:6.2f} / {worst:6.2f}")
    finally:
        await hasher.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.image_hash_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lag-images", type=int, default=40)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.runs, args.lag_images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
