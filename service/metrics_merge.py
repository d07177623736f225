"""One `/metrics` for a process and its stream members: snapshots of metric families, and their merge.

With stream members (service/stream/members.py) the stream counts in child processes, each with its
own prometheus_client registry. A member sends `take_snapshot(REGISTRY, MEMBER_FAMILIES)` every
status period; the parent passes it to `MergedRegistry.update` and serves a registry holding
`MergedRegistry(REGISTRY)`. Every family then reads as if all the members' increments had happened
in the parent, so dashboards, recording rules and alerts stay as they are.

The rules are those of prometheus_client's multiprocess mode, which the test suite runs side by
side with this merge on the same operations (tests/test_metrics_merge.py): why not that mode
itself? It needs a writable directory shared by every process, mmap-backed values on every hot-path
increment, no Info metrics and no per-process `process_*` collectors; snapshots over the pipe the
members already have need none of that. Per sample (sample name + label set):
- counter, histogram and summary samples (`_total`, `_bucket`, `_count`, `_sum`) add up: the
  parent's value, every live member's latest, and what retired members had counted (as the
  library keeps a dead process's counter files). Keeping the retired counts is what keeps a
  counter from going down when a member ends and its successor starts again at 0. Exposed buckets
  are cumulative, so adding them per `le` gives the union's buckets.
- gauges: the library's `livesum` mode, the parent's and the live members' values added: the
  stream's gauges are per-process shares (partitions, in-flight batches, lag of partitions no two
  members hold, resident memory). `retire(member)` is `mark_process_dead`: its gauges vanish.
- `_created` is a time, not a count (the library's mode has none): the parent's, else the earliest
  a member reported.
- info, stateset, enum and unknown families are states, not shares: the parent's pass through alone.

Snapshots are plain tuples: immutable, so a scrape reads them while the event loop replaces them,
and cheap to pickle. The merge runs per scrape, in the thread that renders it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Hashable, Iterator
from typing import Final, TypeAlias

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

Labels: TypeAlias = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
SampleSnapshot: TypeAlias = tuple[str, Labels, float]  # sample name, labels, value
FamilySnapshot: TypeAlias = tuple[str, str, str, tuple[SampleSnapshot, ...]]  # name, type, help, samples
Snapshot: TypeAlias = tuple[FamilySnapshot, ...]

_MERGED_TYPES: Final = frozenset({"counter", "gauge", "histogram", "summary"})
# Every sample name a family of these types exposes: `restricted_registry` filters by sample name.
_SUFFIXES: Final = ("", "_total", "_created", "_bucket", "_count", "_sum")
# The label that tells a family's samples of one series apart; the text format wants them adjacent.
_SERIES_LABEL: Final = {"histogram": "le", "summary": "quantile"}
# prometheus_client's order within a series: buckets (by `le`), count, sum, created.
_SUFFIX_RANK: Final = {"_bucket": 0, "_total": 0, "_count": 1, "_sum": 2, "_created": 3}

_Key: TypeAlias = tuple[str, Labels]  # sample name, labels


def family_names(*collectors: Collector) -> frozenset[str]:
    """The family names (`Metric.name`: a counter's without `_total`) the collectors export.

    Refuses info, stateset, enum and unknown families: they hold one process's state, there is no
    sum of them to expose.
    """
    names: set[str] = set()
    for collector in collectors:
        for family in collector.collect():
            if family.type not in _MERGED_TYPES:
                raise ValueError(f"{family.name}: a {family.type} family cannot be merged across processes")
            names.add(family.name)
    return frozenset(names)


def take_snapshot(registry: CollectorRegistry, names: Collection[str]) -> Snapshot:
    """The current samples of the families `names` (of mergeable types) in `registry`, by name.

    Only the collectors of those families run (not the process collector, not HTTP's histograms).
    A labelled family without series yet is absent, as it would be from a scrape.
    """
    wanted = {name + suffix for name in names for suffix in _SUFFIXES}
    families = [
        (
            family.name,
            family.type,
            family.documentation,
            tuple((s.name, tuple(sorted(s.labels.items())), float(s.value)) for s in family.samples),
        )
        for family in registry.restricted_registry(wanted).collect()
        if family.name in names and family.type in _MERGED_TYPES
    ]
    # The registry yields its collectors in set order: sorted, equal states give equal snapshots.
    families.sort(key=lambda family: family[0])
    return tuple(families)


class MergedRegistry:
    """A collector: what `/metrics` exposes when stream members run (the parent's REGISTRY merged).

    `update` and `retire` run on the event loop, `collect` in the rendering thread: the lock guards
    only the swap of references to immutable snapshots, never a merge.
    """

    def __init__(self, base: CollectorRegistry) -> None:
        self._base = base
        self._lock = threading.Lock()
        self._live: dict[Hashable, Snapshot] = {}
        self._retired: Snapshot = ()  # counts of ended members, folded into one snapshot

    def update(self, member: Hashable, snapshot: Snapshot) -> None:
        """`snapshot` replaces the member's previous one (a retired key may be used again)."""
        with self._lock:
            self._live[member] = snapshot

    def retire(self, member: Hashable) -> None:
        """The member ended: keep its counts (counter, histogram, summary), drop its gauges."""
        with self._lock:
            last = self._live.pop(member, None)
            if last is None:
                return
            folded = _Sums()
            folded.add(self._retired)
            folded.add(last, gauges=False)
            self._retired = folded.snapshot()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshots = (self._retired, *self._live.values())
        sums = _Sums()
        for snapshot in snapshots:
            sums.add(snapshot)
        for family in self._base.collect():
            extra = sums.values.pop(family.name, None)
            if extra is None or sums.types[family.name][0] != family.type:
                yield family  # members do not report it, or define it differently: the parent's stands
            else:
                yield _merge(family, extra)
        for name, extra in sums.values.items():  # families only members have
            kind, documentation = sums.types[name]
            yield _merge(Metric(name, documentation, kind), extra)


class _Sums:
    """Snapshots added up per family and sample, in the order their series first appeared."""

    def __init__(self) -> None:
        self.types: dict[str, tuple[str, str]] = {}  # family → (type, help)
        self.values: dict[str, dict[_Key, float]] = {}

    def add(self, snapshot: Snapshot, *, gauges: bool = True) -> None:
        for name, kind, documentation, samples in snapshot:
            if kind not in _MERGED_TYPES or (kind == "gauge" and not gauges):
                continue
            if self.types.setdefault(name, (kind, documentation))[0] != kind:
                continue  # processes disagree on a definition: the first one seen wins
            values = self.values.setdefault(name, {})
            created = name + "_created" if kind != "gauge" else None
            for sample_name, labels, value in samples:
                key = (sample_name, labels)
                previous = values.get(key)
                if previous is None:
                    values[key] = value
                elif sample_name == created:
                    values[key] = min(previous, value)
                else:
                    values[key] = previous + value

    def snapshot(self) -> Snapshot:
        return tuple(
            (name, kind, documentation, tuple((key[0], key[1], value) for key, value in self.values[name].items()))
            for name, (kind, documentation) in self.types.items()
            if name in self.values
        )


def _merge(base: Metric, extra: dict[_Key, float]) -> Metric:
    """`base` with `extra` added per sample; series `base` lacks join after its own, each series'
    samples adjacent and in prometheus_client's order."""
    created = base.name + "_created"
    series_label = _SERIES_LABEL.get(base.type)
    series: dict[Labels, list[Sample]] = {}
    for sample in base.samples:
        labels = tuple(sorted(sample.labels.items()))
        more = extra.pop((sample.name, labels), None)
        if more is not None and sample.name != created:
            sample = sample._replace(value=sample.value + more)
        series.setdefault(_series(labels, series_label), []).append(sample)
    grown: set[Labels] = set()
    for (name, labels), value in extra.items():
        key = _series(labels, series_label)
        series.setdefault(key, []).append(Sample(name, dict(labels), value))
        grown.add(key)
    for key in grown:
        series[key].sort(key=lambda sample: _position(base.name, sample, series_label))
    merged = Metric(base.name, base.documentation, base.type, base.unit)
    merged.samples = [sample for samples in series.values() for sample in samples]
    return merged


def _series(labels: Labels, series_label: str | None) -> Labels:
    return tuple(pair for pair in labels if pair[0] != series_label) if series_label else labels


def _position(family: str, sample: Sample, series_label: str | None) -> tuple[int, float]:
    rank = _SUFFIX_RANK.get(sample.name.removeprefix(family), 0)
    bound = sample.labels.get(series_label, "") if series_label else ""
    return rank, float(bound) if bound else 0.0  # float("+Inf") is inf: the +Inf bucket comes last
