"""A process of tests/test_metrics_merge.py's comparison with prometheus_client's multiprocess mode:
run with PROMETHEUS_MULTIPROC_DIR set, it applies the operations given on stdin (JSON) to the
test's metric definitions (gauges in `livesum` mode), then writes its `take_snapshot` to stdout."""

from __future__ import annotations

import json
import pickle
import sys

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from service.metrics_merge import take_snapshot

BOUNDS = (0.1, 0.5, 1.0, 5.0)


def main() -> None:
    jobs = Counter("jobs_total", "Jobs done.", ["kind"])
    ticks = Counter("ticks_total", "Ticks.")
    wait = Histogram("wait_seconds", "Wait.", ["queue"], buckets=BOUNDS)
    depth = Gauge("depth_records", "Depth.", ["partition"], multiprocess_mode="livesum")
    for what, label, amount in json.load(sys.stdin):
        if what == "jobs":
            jobs.labels(label).inc(amount)
        elif what == "ticks":
            ticks.inc(amount)
        elif what == "wait":
            wait.labels(label).observe(amount)
        else:
            depth.labels(label).inc(amount)
    sys.stdout.buffer.write(pickle.dumps(take_snapshot(REGISTRY, {"jobs", "ticks", "wait_seconds", "depth_records"})))


if __name__ == "__main__":
    main()
