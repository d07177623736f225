"""A Prometheus histogram that takes a whole batch of observations at once.

The stream observes one end-to-end lag per verdict; prometheus_client's `Histogram.observe` takes
two locks and walks the bounds per call (~1.5 µs), and it has no bulk API. `BulkHistogram` keeps
its own bucket counts and exports them the way prometheus_client lets any collector export data:
a registered collector yielding a `HistogramMetricFamily` (the library's public custom-collector
API, no private attributes). Its exposition is a prometheus_client `Histogram`'s, sample for
sample (buckets, `_count`, `_sum`, `_created`; tests/test_bulk_histogram.py).

    lag = BulkHistogram("redline_x_seconds", "help", buckets=(0.1, 1.0))
    lag.observe_many([0.05, 0.2, 3.0])      one lock round per batch
    lag.labels("http").observe(0.02)        with label names, as a Histogram's child
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Metric
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class HistogramChild:
    """The bucket counts of one label set."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds  # ascending, +Inf last
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._lock = threading.Lock()  # observed on the event loop, collected in a scrape's thread
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.observe_many((amount,))

    def observe_many(self, amounts: Sequence[float]) -> None:
        """As `observe` per amount: an amount goes to the first bucket whose bound is >= it
        (bisect_left's index); NaN, which no bound is >= to, to none, its sum counted as it is."""
        if not amounts:
            return
        bounds = self._bounds
        tally = Counter(bisect.bisect_left(bounds, amount) for amount in amounts if not math.isnan(amount))
        total = sum(amounts)
        with self._lock:
            for index, count in tally.items():
                self._counts[index] += count
            self._sum += total

    def read(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum


class BulkHistogram:
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self._children[()] = HistogramChild(self._bounds)
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = HistogramChild(self._bounds)
        return child

    def remove(self, *values: str) -> None:
        """Drop the series of one label set."""
        with self._lock:
            del self._children[tuple(str(v) for v in values)]

    def observe(self, amount: float) -> None:
        self._unlabelled().observe(amount)

    def observe_many(self, amounts: Sequence[float]) -> None:
        self._unlabelled().observe_many(amounts)

    def _unlabelled(self) -> HistogramChild:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}: observe through labels()")
        return self._children[()]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            children = list(self._children.items())
        for values, child in children:
            counts, total = child.read()
            cumulative, buckets = 0, []
            for bound, count in zip(self._bounds, counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), float(cumulative)))  # type: ignore[no-untyped-call]
            family.add_metric(list(values), buckets, total)
            family.add_sample(self.name + "_created", dict(zip(self.labelnames, values, strict=True)), child.created)
        yield family
