"""stream_bench's steady window: marked by output timestamps, CPU interpolated to its ends (pure
arithmetic over synthetic readings; no figure is judged)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from loadtest.stream_bench import ProcessStats, Sample, usage_between


@dataclass
class Output:
    timestamp: int  # ms, as a Kafka record's


def reading(at: float, serve_cpu: float, member_cpu: float | None, broker_cpu: float) -> Sample:
    tree = [ProcessStats(10, serve_cpu, 200 * 2**20)]
    if member_cpu is not None:  # a process that started late is missing from early readings
        tree.append(ProcessStats(11, member_cpu, 100 * 2**20))
    return Sample(at, tree, ProcessStats(99, broker_cpu, 0))


def test_rate_and_cpu_come_from_the_outputs_window_not_from_the_readings() -> None:
    # A slow start and end (100 outputs/s for 1 s each) around 800 outputs at 1,000/s from t=101 s;
    # CPU grows 0.5 s (serve) and 1 s (member) per second of wall time, the broker 0.1 s.
    stamps = [100_000 + 10 * i for i in range(100)] + [101_000 + i for i in range(800)]
    stamps += [101_800 + 10 * i for i in range(100)]
    outputs = [Output(stamp) for stamp in stamps]
    samples = [reading(t, 0.5 * t, 1.0 * t, 0.1 * t) for t in (99.0, 100.5, 100.95, 101.35, 101.85, 103.0)]
    usage = usage_between(samples, outputs)
    # 10% → 90%: outputs 100 → 900, stamped 101.0 s → 101.8 s: 800 events in 0.8 s (first → last
    # would be 1,000 in 2.79 s).
    assert usage.steady_rate == pytest.approx(1000)
    serve, member = usage.cpu_us_per_event
    assert serve == pytest.approx(0.5 * 0.8 / 800 * 1e6)  # interpolated between the readings around the ends
    assert member == pytest.approx(1.0 * 0.8 / 800 * 1e6)
    assert usage.broker_cpu_us_per_event == pytest.approx(0.1 * 0.8 / 800 * 1e6)
    assert usage.rss_mib == [200, 100]


def test_a_process_missing_from_the_first_reading_counts_from_zero() -> None:
    outputs = [Output(10_000 + 10 * i) for i in range(100)]  # 100/s from t=10 s
    samples = [reading(9.0, 1.0, None, 0.0), reading(11.0, 2.0, 0.4, 0.0)]
    usage = usage_between(samples, outputs)
    assert usage.steady_rate == pytest.approx(100)
    # Window 10.1 s → 10.9 s; the member's 0.4 s is spread linearly from 0 at 9.0 s.
    assert usage.cpu_us_per_event[1] == pytest.approx(0.4 * 0.8 / 2.0 / 80 * 1e6)


def test_too_few_outputs_or_readings_measure_nothing() -> None:
    usage = usage_between([reading(1.0, 0, 0, 0)], [Output(1000 + i) for i in range(100)])
    assert usage.cpu_us_per_event == [] and usage.steady_rate != usage.steady_rate  # NaN


def test_a_process_that_exited_keeps_its_last_reading() -> None:
    # A pass-through exits once done: the readings after that have no tree.
    outputs = [Output(10_000 + 10 * i) for i in range(100)]
    samples = [reading(9.0, 0.0, None, 0.0), reading(11.0, 1.0, None, 0.2), Sample(12.0, [], None)]
    usage = usage_between(samples, outputs)
    assert usage.cpu_us_per_event == [pytest.approx(1.0 * 0.8 / 2.0 / 80 * 1e6)]
    assert usage.broker_cpu_us_per_event == pytest.approx(0.2 * 0.8 / 2.0 / 80 * 1e6)
