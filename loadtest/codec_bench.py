"""Producer compression codecs on verdict batches: CPU per record and bytes per record on the wire.

    .venv/bin/python -m loadtest.codec_bench [--events 20000] [--runs 3]

Classifies `--events` sample events with the default pack, then builds aiokafka record batches
(512 KiB, the verdict topic's key and `redline-ruleset-digest` header, as the stream produces
them) with each codec aiokafka offers. Prints per codec the best of `--runs` CPU times per record
(append + build, compression included) and the compressed bytes per record. This is what chose
the default `REDLINE_PRODUCER_COMPRESSION` (docs/stream.md).
"""

from __future__ import annotations

import argparse
import time
from typing import Final

from aiokafka.producer.message_accumulator import BatchBuilder

from loadtest.engine_bench import NOW, sample_events
from service.decisions import RULESET_HEADER
from service.events import decode_event, encode_verdict
from service.rules.loader import load_pack
from service.settings import bundled_rules_dir

BATCH_BYTES: Final = 512 * 1024
CODECS: Final = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # aiokafka's codec ids


def build_batches(values: list[bytes], digest: bytes, codec: int) -> tuple[float, float]:
    """(CPU µs per record, wire bytes per record) for one pass over `values`."""
    headers = [(RULESET_HEADER, digest)]
    started = time.process_time()
    wire = 0
    batch = BatchBuilder(BATCH_BYTES, codec)
    for i, value in enumerate(values):
        key = b"group-%d" % (i % 1000)
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            wire += len(batch._build())  # what send_batch puts on the wire
            batch = BatchBuilder(BATCH_BYTES, codec)
            batch.append(key=key, value=value, timestamp=None, headers=headers)
    wire += len(batch._build())
    return (time.process_time() - started) / len(values) * 1e6, wire / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = load_pack(bundled_rules_dir())
    values = [encode_verdict(engine.classify(decode_event(raw), NOW)) for raw in sample_events(args.events)]
    digest = engine.ruleset.digest.encode()
    print(f"{len(values)} verdicts, {sum(map(len, values)) / len(values):.0f} bytes each on average")
    for name, codec in CODECS.items():
        results = [build_batches(values, digest, codec) for _ in range(args.runs)]
        cpu = min(r[0] for r in results)
        wire = results[0][1]
        print(f"  {name:7s} {cpu:5.2f} µs per record (append + build)   {wire:6.1f} bytes per record on the wire")


if __name__ == "__main__":
    main()
