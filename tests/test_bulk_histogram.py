"""`BulkHistogram` exposes what a prometheus_client `Histogram` with one `observe` per amount
does: the same samples in the same order (bucket counts and count equal, the sum up to float
rounding), through the library's public collector API."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.bulk_histogram import BulkHistogram

BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

amounts = st.lists(
    st.one_of(
        st.sampled_from((0.0, *BOUNDS, math.inf)),  # exactly on a bound: `observe` puts it in that bucket
        st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
    ),
    max_size=60,
)


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def _both(amount_lists: list[list[float]], labels: tuple[str, ...] = ()) -> tuple[CollectorRegistry, CollectorRegistry]:
    bulk_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    names = ["source"] if labels else []
    bulk = BulkHistogram("lag_seconds", "test", names, buckets=BOUNDS, registry=bulk_registry)
    reference = Histogram("lag_seconds", "test", names, buckets=BOUNDS, registry=reference_registry)
    for batch in amount_lists:
        (bulk.labels(*labels) if labels else bulk).observe_many(batch)
        for amount in batch:
            (reference.labels(*labels) if labels else reference).observe(amount)
    return bulk_registry, reference_registry


@given(st.lists(amounts, max_size=4))
def test_bulk_equals_one_by_one(amount_lists: list[list[float]]) -> None:
    bulk, reference = (_samples(r) for r in _both(amount_lists))
    assert [(n, labels) for n, labels, _ in bulk] == [(n, labels) for n, labels, _ in reference]  # same order
    for (name, _, got), (_, _, expected) in zip(bulk, reference, strict=True):
        if name.endswith("_sum"):
            assert got == expected or math.isclose(got, expected, rel_tol=1e-9)
        else:
            assert got == expected


def test_counts_land_in_their_buckets() -> None:
    registry, _ = _both([[0.001, 0.002, 7.0, 1e9]])
    samples = {name + labels.get("le", ""): value for name, labels, value in _samples(registry)}
    assert samples["lag_seconds_bucket0.001"] == 1
    assert samples["lag_seconds_bucket0.005"] == 2
    assert samples["lag_seconds_bucket10.0"] == 3
    assert samples["lag_seconds_bucket+Inf"] == 4
    assert samples["lag_seconds_count"] == 4
    assert samples["lag_seconds_sum"] == 0.003 + 7.0 + 1e9


def test_the_exposition_is_a_histograms_with_labels_and_created() -> None:
    bulk, reference = _both([[0.02, 0.3], [5.0]], labels=("stream",))
    def lines(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert lines(bulk) == lines(reference)
    created = [line for line in generate_latest(bulk).decode().splitlines() if line.startswith("lag_seconds_created")]
    assert created and created[0].startswith('lag_seconds_created{source="stream"}')


def test_labels_are_checked() -> None:
    labelled = BulkHistogram("x_seconds", "test", ["source"], buckets=BOUNDS, registry=None)
    with pytest.raises(ValueError, match="labels"):
        labelled.observe(1.0)
    with pytest.raises(ValueError, match="labels"):
        labelled.labels("a", "b")
