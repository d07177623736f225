"""`metrics.observe_many` exposes what one `observe` per amount does: the same bucket counts and
count, and the same sum up to float rounding (a batch's amounts are added together first)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from service import metrics

BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

amounts = st.lists(
    st.one_of(
        st.sampled_from((0.0, *BOUNDS, math.inf)),  # exactly on a bound: `observe` puts it in that bucket
        st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
    ),
    max_size=60,
)


def _samples(amount_lists: list[list[float]], bulk: bool) -> dict[str, float]:
    registry = CollectorRegistry()
    histogram = Histogram("lag_seconds", "test", buckets=BOUNDS, registry=registry)
    for batch in amount_lists:
        if bulk:
            metrics.observe_many(histogram, batch)
        else:
            for amount in batch:
                histogram.observe(amount)
    return {
        sample.name + sample.labels.get("le", ""): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@given(st.lists(amounts, max_size=4))
def test_bulk_equals_one_by_one(amount_lists: list[list[float]]) -> None:
    bulk, one_by_one = _samples(amount_lists, bulk=True), _samples(amount_lists, bulk=False)
    bulk_sum, one_by_one_sum = bulk.pop("lag_seconds_sum"), one_by_one.pop("lag_seconds_sum")
    assert bulk == one_by_one
    assert bulk_sum == one_by_one_sum or math.isclose(bulk_sum, one_by_one_sum, rel_tol=1e-9)


def test_bulk_counts_land_in_their_buckets() -> None:
    samples = _samples([[0.001, 0.002, 7.0, 1e9]], bulk=True)
    assert samples["lag_seconds_bucket0.001"] == 1
    assert samples["lag_seconds_bucket0.005"] == 2
    assert samples["lag_seconds_bucket10.0"] == 3
    assert samples["lag_seconds_bucket+Inf"] == 4
    assert samples["lag_seconds_count"] == 4
    assert samples["lag_seconds_sum"] == 0.003 + 7.0 + 1e9
