"""`metrics_merge`: a parent's registry merged with its members' snapshots exposes what one process
would have, had every increment happened in it (a 4th "reference" registry receives them all)."""

from __future__ import annotations

import math
import pickle
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Final, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import metrics
from service.metrics_merge import MergedRegistry, Snapshot, family_names, take_snapshot
from service.stream.member import MEMBER_FAMILIES  # the stream's families, as members report them
from tests.deploy.tools import require_binary

BOUNDS: Final = (0.1, 0.5, 1.0, 5.0)
LABELS: Final = ("a", "b", "c")

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]


@dataclass
class Process:
    """One process's metrics: the same definitions in a registry of its own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.jobs = Counter("jobs_total", "Jobs done.", ["kind"], registry=self.registry)
        self.ticks = Counter("ticks_total", "Ticks.", registry=self.registry)
        self.wait = Histogram("wait_seconds", "Wait.", ["queue"], buckets=BOUNDS, registry=self.registry)
        self.depth = Gauge("depth_records", "Depth.", ["partition"], registry=self.registry)


_DEFINITIONS: Final = Process()
NAMES: Final = family_names(_DEFINITIONS.jobs, _DEFINITIONS.ticks, _DEFINITIONS.wait, _DEFINITIONS.depth)

Operation = tuple[Literal["jobs", "ticks", "wait", "depth"], str, float]


def apply(process: Process, operation: Operation) -> None:
    what, label, amount = operation
    if what == "jobs":
        process.jobs.labels(label).inc(amount)
    elif what == "ticks":
        process.ticks.inc(amount)
    elif what == "wait":
        process.wait.labels(label).observe(amount)
    else:
        process.depth.labels(label).inc(amount)  # gauges merge by adding: only relative changes compose


operations = st.one_of(
    st.tuples(st.just("jobs"), st.sampled_from(LABELS), st.integers(0, 5).map(float)),
    st.tuples(st.just("ticks"), st.just(""), st.integers(0, 5).map(float)),
    st.tuples(
        st.just("wait"),
        st.sampled_from(LABELS),
        st.one_of(st.sampled_from((0.0, *BOUNDS)), st.floats(0.0, 10.0, allow_nan=False)),  # on a bound or not
    ),
    st.tuples(st.just("depth"), st.sampled_from(LABELS), st.integers(-3, 3).map(float)),
)
# (where, operation, publish): publish sends the member's snapshot now, replacing its previous one.
steps = st.lists(st.tuples(st.sampled_from(("base", "m1", "m2")), operations, st.booleans()), max_size=40)


def samples(registry: CollectorRegistry | MergedRegistry, *, created: bool = False) -> dict[Key, float]:
    """The exposition's samples, parsed back; `_created` (a time, not a count) only if asked for."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if created or not sample.name.endswith("_created")
    }


def assert_same(merged: MergedRegistry, reference: CollectorRegistry, *, zero_gauges: bool = True) -> None:
    """Equal samples; `_sum` up to float rounding (added in another order). Without `zero_gauges`, a
    gauge series at 0 may be absent on one side (a retired member's series vanish with it)."""
    got, want = samples(merged), samples(reference)
    if not zero_gauges:
        got, want = ({k: v for k, v in s.items() if not (k[0] == "depth_records" and v == 0)} for s in (got, want))
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0].endswith("_sum"):
            assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), key
        else:
            assert got[key] == value, key


def assert_well_formed(text: str) -> None:
    """Each histogram series' samples adjacent, buckets ascending before count and sum, +Inf = count."""
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        done: set[Labels] = set()
        current: Labels | None = None
        buckets: dict[Labels, list[tuple[float, float]]] = {}
        counts: dict[Labels, float] = {}
        for sample in family.samples:
            series = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            where = f"{family.name}{dict(series)}"
            if series != current:
                assert series not in done, f"{where}: samples not adjacent"
                done.add(series)
                current = series
            if sample.name.endswith("_bucket"):
                assert series not in counts, f"{where}: a bucket after the count"
                previous = buckets.setdefault(series, [])
                bound = float(sample.labels["le"])
                assert not previous or bound > previous[-1][0], f"{where}: buckets out of order"
                previous.append((bound, sample.value))
            elif sample.name.endswith("_count"):
                counts[series] = sample.value
        for series, bounds in buckets.items():
            assert bounds[-1] == (math.inf, counts[series]), f"{family.name}{dict(series)}: +Inf bucket"


def exposition(registry: MergedRegistry) -> str:
    return generate_latest(registry).decode()


@given(steps)
@settings(max_examples=200, deadline=None)
def test_merged_equals_one_process(plan: list[tuple[str, Operation, bool]]) -> None:
    base, reference = Process(), Process()
    members = {"m1": Process(), "m2": Process()}
    merged = MergedRegistry(base.registry)
    for where, operation, publish in plan:
        apply(reference, operation)
        apply(base if where == "base" else members[where], operation)
        if publish and where in members:
            merged.update(where, take_snapshot(members[where].registry, NAMES))
    for key, member in members.items():
        merged.update(key, take_snapshot(member.registry, NAMES))
    assert_same(merged, reference.registry)
    assert_well_formed(exposition(merged))


@given(st.lists(st.one_of(steps.map(tuple), st.sampled_from(("m1", "m2"))), max_size=6))
@settings(max_examples=100, deadline=None)
def test_counts_survive_member_restarts(plan: list[tuple[tuple[str, Operation, bool], ...] | str]) -> None:
    """A restart (a str in the plan) retires the member and starts a new one from 0 under a new key:
    counts stay (counters never go down), the old member's gauge share goes."""
    base, reference = Process(), Process()
    members = {"m1": Process(), "m2": Process()}
    keys = {"m1": 0, "m2": 0}
    merged = MergedRegistry(base.registry)
    for part in plan:
        if isinstance(part, str):
            merged.update((part, keys[part]), take_snapshot(members[part].registry, NAMES))
            merged.retire((part, keys[part]))
            for (_, labels), value in _gauges(members[part].registry).items():
                reference.depth.labels(dict(labels)["partition"]).dec(value)
            members[part], keys[part] = Process(), keys[part] + 1
            continue
        for where, operation, publish in part:
            apply(reference, operation)
            apply(base if where == "base" else members[where], operation)
            if publish and where in members:
                merged.update((where, keys[where]), take_snapshot(members[where].registry, NAMES))
    for name, member in members.items():
        merged.update((name, keys[name]), take_snapshot(member.registry, NAMES))
    assert_same(merged, reference.registry, zero_gauges=False)


def _gauges(registry: CollectorRegistry) -> dict[Key, float]:
    return {key: value for key, value in samples(registry).items() if key[0] == "depth_records"}


def _value(merged: MergedRegistry, name: str, **labels: str) -> float | None:
    return samples(merged).get((name, tuple(sorted(labels.items()))))


def test_retire_keeps_counts_and_drops_gauges() -> None:
    base, member = Process(), Process()
    base.jobs.labels("a").inc(1)
    base.depth.labels("0").set(2)
    member.jobs.labels("a").inc(5)
    member.wait.labels("q").observe(0.3)
    member.depth.labels("0").set(4)
    member.depth.labels("7").set(9)  # a partition only the member holds
    merged = MergedRegistry(base.registry)
    merged.update("first", take_snapshot(member.registry, NAMES))
    merged.update("first", take_snapshot(member.registry, NAMES))  # a newer snapshot replaces, never adds
    assert _value(merged, "jobs_total", kind="a") == 6
    assert _value(merged, "depth_records", partition="0") == 6
    assert _value(merged, "depth_records", partition="7") == 9

    merged.retire("first")
    merged.retire("never-seen")  # an unknown member: nothing to fold
    assert _value(merged, "jobs_total", kind="a") == 6
    assert _value(merged, "wait_seconds_count", queue="q") == 1
    assert _value(merged, "wait_seconds_bucket", queue="q", le="0.5") == 1
    assert _value(merged, "depth_records", partition="0") == 2  # the base's own share stays
    assert _value(merged, "depth_records", partition="7") is None

    successor = Process()  # the restarted member counts from 0 again
    successor.jobs.labels("a").inc(2)
    successor.wait.labels("q").observe(3.0)
    merged.update("second", take_snapshot(successor.registry, NAMES))
    assert _value(merged, "jobs_total", kind="a") == 8
    assert _value(merged, "wait_seconds_count", queue="q") == 2
    assert _value(merged, "wait_seconds_bucket", queue="q", le="0.5") == 1
    assert _value(merged, "wait_seconds_sum", queue="q") == pytest.approx(3.3)
    merged.retire("second")
    assert _value(merged, "jobs_total", kind="a") == 8  # two retirements add up
    assert_well_formed(exposition(merged))


def test_series_only_members_have_join_their_family() -> None:
    base, member = Process(), Process()
    base.wait.labels("shared").observe(0.2)
    base.jobs.labels("a")
    member.wait.labels("zeta").observe(0.7)  # series only the member has, before and after the base's
    member.wait.labels("alpha").observe(7.0)
    member.wait.labels("shared").observe(0.05)
    member.jobs.labels("new").inc(3)
    member.depth.labels("3").set(11)
    merged = MergedRegistry(base.registry)
    merged.update("m", take_snapshot(member.registry, NAMES))

    text = exposition(merged)
    assert_well_formed(text)
    wait = next(f for f in text_string_to_metric_families(text) if f.name == "wait_seconds")
    assert [s.labels["queue"] for s in wait.samples][:7] == ["shared"] * 7  # the base's order first
    assert _value(merged, "wait_seconds_bucket", queue="shared", le="0.1") == 1
    assert _value(merged, "wait_seconds_count", queue="shared") == 2
    assert _value(merged, "wait_seconds_bucket", queue="zeta", le="0.5") == 0
    assert _value(merged, "wait_seconds_bucket", queue="zeta", le="1.0") == 1
    assert _value(merged, "wait_seconds_count", queue="alpha") == 1
    assert _value(merged, "jobs_total", kind="new") == 3
    assert _value(merged, "depth_records", partition="3") == 11
    assert 'jobs_created{kind="new"}' in text  # a new counter series keeps its creation time

    member.depth.remove("3")  # the partition was revoked: its lag series goes
    merged.update("m", take_snapshot(member.registry, NAMES))
    assert _value(merged, "depth_records", partition="3") is None


def test_created_is_the_base_s_or_the_earliest_member_s() -> None:
    snapshot: Snapshot = (
        (
            "jobs",
            "counter",
            "Jobs done.",
            (
                ("jobs_total", (("kind", "a"),), 1.0),
                ("jobs_created", (("kind", "a"),), 50.0),
                ("jobs_total", (("kind", "z"),), 1.0),
                ("jobs_created", (("kind", "z"),), 50.0),
            ),
        ),
    )
    earlier = tuple(
        (n, t, h, tuple((s, lab, v - 10 if s.endswith("_created") else v) for s, lab, v in ss))
        for n, t, h, ss in snapshot
    )
    base = Process()
    base.jobs.labels("a")
    base_created = samples(base.registry, created=True)[("jobs_created", (("kind", "a"),))]
    merged = MergedRegistry(base.registry)
    merged.update(1, snapshot)
    merged.update(2, earlier)
    found = samples(merged, created=True)
    assert found[("jobs_created", (("kind", "a"),))] == base_created
    assert found[("jobs_created", (("kind", "z"),))] == 40.0
    assert found[("jobs_total", (("kind", "z"),))] == 2.0


def test_families_only_members_have_are_exposed_with_their_help() -> None:
    member = Process()
    Counter("retries_total", "Retries after a timeout.", registry=member.registry).inc(4)
    merged = MergedRegistry(Process().registry)
    merged.update("m", take_snapshot(member.registry, {*NAMES, "retries"}))
    text = exposition(merged)
    assert "# HELP retries_total Retries after a timeout.\n# TYPE retries_total counter\nretries_total 4.0\n" in text


def test_states_are_never_merged() -> None:
    base, member = Process(), Process()
    for process, value in ((base, "parent"), (member, "member")):
        Info("pack", "Pack.", registry=process.registry).info({"name": value})
        Enum("mode", "Mode.", states=["parent", "member"], registry=process.registry).state(value)
    info = Info("pack", "Pack.", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="info"):
        family_names(info)
    snapshot = take_snapshot(member.registry, {*NAMES, "pack", "mode"})
    assert {family[0] for family in snapshot} == {"ticks"}  # the unlabelled counter; no state
    merged = MergedRegistry(base.registry)
    merged.update("m", snapshot)
    assert samples(merged) == samples(base.registry)


def test_snapshots_pickle() -> None:
    process = Process()
    plan: list[Operation] = [("jobs", "a", 2.0), ("wait", "q", 0.3), ("depth", "1", -4.0), ("ticks", "", 1.0)]
    for operation in plan:
        apply(process, operation)
    for snapshot in (take_snapshot(process.registry, NAMES), take_snapshot(REGISTRY, MEMBER_FAMILIES)):
        assert snapshot
        assert pickle.loads(pickle.dumps(snapshot, 5)) == snapshot
        assert hash(snapshot) == hash(pickle.loads(pickle.dumps(snapshot, 5)))  # immutable all the way down


def test_promtool_accepts_the_merged_exposition_of_the_real_metrics() -> None:
    promtool = require_binary("promtool")
    # Counts only grow, as they do in serving: other tests read these as deltas.
    metrics.events_consumed_total.inc(3)
    metrics.classify_duration_seconds.labels("stream").observe(2e-5)
    metrics.end_to_end_lag_seconds.observe(0.2)
    metrics.stream_commits_total.labels("success").inc()
    first = take_snapshot(REGISTRY, MEMBER_FAMILIES)
    # Series only a member has: removed again at once, so the base (this registry) lacks them.
    metrics.classify_duration_seconds.labels("merge-test").observe(3e-4)
    metrics.stream_consumer_lag_records.labels("9999").set(5)
    try:
        second = take_snapshot(REGISTRY, MEMBER_FAMILIES)
    finally:
        metrics.classify_duration_seconds.remove("merge-test")
        metrics.stream_consumer_lag_records.remove("9999")
    merged = MergedRegistry(REGISTRY)
    merged.update(0, first)
    merged.update(1, second)
    text = exposition(merged)
    assert 'redline_stream_consumer_lag_records{partition="9999"} 5.0' in text
    assert 'redline_classify_duration_seconds_count{source="merge-test"} 1.0' in text
    assert_well_formed(text)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_family_names_are_those_collect_reports() -> None:
    process = Process()
    assert family_names(process.jobs, process.wait, process.depth) == {"jobs", "wait_seconds", "depth_records"}
    process.jobs.labels("a")
    assert [family[0] for family in take_snapshot(process.registry, {"jobs"})] == ["jobs"]  # only those asked


def test_series_are_ordered_whatever_order_a_snapshot_lists_them_in() -> None:
    member = Process()
    member.wait.labels("q").observe(0.7)
    member.jobs.labels("n").inc()
    shuffled = tuple(
        (name, kind, documentation, tuple(reversed(series)))
        for name, kind, documentation, series in take_snapshot(member.registry, NAMES)
    )
    merged = MergedRegistry(Process().registry)
    merged.update("m", shuffled)
    assert_well_formed(exposition(merged))
    assert samples(merged) == samples(member.registry)


def test_a_scrape_never_sees_a_half_applied_retirement() -> None:
    """Scrapes in another thread while members come and go: the total never goes down."""
    merged = MergedRegistry(Process().registry)
    done, scraped = threading.Event(), threading.Event()
    expected = [0.0]  # the total `scraped` waits for
    seen: list[float] = []

    def scrape() -> None:
        while not done.is_set():
            seen.append(_value(merged, "ticks_total") or 0.0)
            if seen[-1] >= expected[0]:
                scraped.set()

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for generation in range(300):
            member = Process()
            member.ticks.inc()
            scraped.clear()
            expected[0] = generation + 1
            merged.update(generation, take_snapshot(member.registry, NAMES))
            assert scraped.wait(5)  # a scrape saw the live member: the retirement races the next one
            merged.retire(generation)
    finally:
        done.set()
        scraper.join()
    assert seen == sorted(seen)
    assert _value(merged, "ticks_total") == 300


# --- against prometheus_client's own multiprocess mode ------------------------------------------

_MULTIPROCESS_PLAN = st.lists(
    st.tuples(st.lists(operations, max_size=12), st.booleans()),  # (a process's operations, it died)
    min_size=1, max_size=4,
)


@given(plan=_MULTIPROCESS_PLAN)
@settings(max_examples=8, deadline=None)
def test_the_merge_follows_prometheus_client_multiprocess_rules(
    plan: list[tuple[list[Operation], bool]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same operations in real processes, once through the library's multiprocess mode
    (mmap files, `MultiProcessCollector`, `mark_process_dead` for the dead) and once through
    member snapshots merged (`retire` for the dead): counters and histograms summed over live and
    dead processes, gauges summed over live ones (`livesum`). `_created` has no multiprocess
    counterpart and is left out."""
    import json
    import os
    import sys

    from prometheus_client import multiprocess

    directory = tmp_path_factory.mktemp("multiproc")
    merged = MergedRegistry(CollectorRegistry())  # a parent that counts nothing itself
    for index, (ops, died) in enumerate(plan):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.metrics_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        )
        out, _ = child.communicate(json.dumps(ops).encode(), timeout=60)
        assert child.returncode == 0
        merged.update(index, pickle.loads(out))
        if died:
            merged.retire(index)
            multiprocess.mark_process_dead(child.pid, str(directory))
    reference = CollectorRegistry()
    multiprocess.MultiProcessCollector(reference, path=str(directory))
    got, want = samples(merged), samples(reference)
    # A series every process left at 0 is absent from one side or the other: no difference in value.
    got, want = ({k: v for k, v in s.items() if v != 0 or k[0].endswith("_bucket")} for s in (got, want))
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), key
