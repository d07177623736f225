"""The load tools (Kafka load, producer codecs) run end to end and report what they measured (no
figure is judged here: performance is measured in loadtest/, never asserted in tests)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RATE, SECONDS = 200, 2


def test_kafka_load_reports_both_targets(tmp_path: Path) -> None:
    # Its own session: on a timeout the broker and the services the tool started go down with it.
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.kafka_load", "--rate", str(RATE), "--seconds", str(SECONDS),
         "--pool", "200", "--warmup-events", "50", "--out", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"kafka_load did not finish in 150 s:\n{stdout[-3000:]}{stderr[-3000:]}")
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    report = json.loads((tmp_path / "kafka_load.json").read_text())
    runs = {run["target"]: run for run in report["runs"]}
    assert set(runs) == {"naive", "redline"}
    for target, run in runs.items():
        (phase,) = run["phases"]
        assert phase["offered_per_s"] == RATE
        assert phase["events"] == RATE * SECONDS  # the schedule, to the record
        assert phase["missing"] == 0, f"{target}: events without an output record"
        assert phase["outputs"] >= phase["events"]
        assert phase["processed_per_s"] > 0
        assert phase["drained"] is True
        for name in ("p50_ms", "p99_ms", "p999_ms"):
            assert math.isfinite(phase[name]) and phase[name] >= 0, (target, name, phase[name])
        assert phase["p50_ms"] <= phase["p99_ms"] <= phase["p999_ms"] <= phase["max_ms"]
        samples = run["samples"]
        assert samples, f"{target}: no lag samples"
        assert samples[-1]["committed"] == samples[-1]["acked"] >= phase["events"]  # drained at the end
        assert all(s["lag_records"] == s["acked"] - s["committed"] for s in samples)
        assert any(s["target_rss_mib"] for s in samples)
    # Only the service exposes its own lag gauge; the baseline has no /metrics.
    assert any(s["lag_gauge_records"] is not None for s in runs["redline"]["samples"])
    assert all(s["lag_gauge_records"] is None for s in runs["naive"]["samples"])
    assert [row["target"] for row in report["medians"]] == [run["target"] for run in report["runs"]]

    with (tmp_path / "phases.csv").open() as handle:
        phases = list(csv.DictReader(handle))
    assert sorted(row["target"] for row in phases) == ["naive", "redline"]
    with (tmp_path / "samples.csv").open() as handle:
        samples_csv = list(csv.DictReader(handle))
    assert len(samples_csv) == sum(len(run["samples"]) for run in report["runs"])
    assert "lag (HW − committed)" in stdout  # the printed lag table


def test_codec_bench_reports_every_codec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.codec_bench", "--events", "300", "--runs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if "per record" in line]
    assert [row[0] for row in rows] == ["none", "gzip", "snappy", "lz4", "zstd"]
    wire = {row[0]: float(row[row.index("bytes") - 1]) for row in rows}  # "<n> bytes per record on the wire"
    assert all(math.isfinite(v) and v > 0 for v in wire.values())
    assert wire["zstd"] < wire["none"]  # it compressed something


async def test_http_bench_batches_are_arrays_the_noop_baseline_answers(tmp_path: Path) -> None:
    import httpx

    from loadtest.baselines.fastapi_noop import app
    from loadtest.http_bench import batch_bodies, sample_bodies, wrk_script

    bodies = batch_bodies(sample_bodies(20), size=5, count=4)
    assert [len(json.loads(body)) for body in bodies] == [5, 5, 5, 5]
    script = wrk_script(bodies, tmp_path, "/check/batch").read_text(encoding="utf-8")
    assert 'wrk.format("POST", "/check/batch"' in script
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for body in bodies:
            response = await client.post("/check/batch", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            assert [v["event_id"] for v in response.json()] == [e["id"] for e in json.loads(body)]


def test_adversarial_report_runs() -> None:
    from loadtest.adversarial import main

    assert main(["--sizes", "256,1024", "--kinds", "pinyin_run,emoji_run", "--fields", "text", "--repeats", "1"]) == 0


def test_http_attacks_cap_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from loadtest.http_attacks import main

    assert main(["--only", "cap"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["answers"] == {"503": 50}


def test_engine_batch_bench_paths_write_the_same_records() -> None:
    # The benchmark's two paths must produce the same verdict records, or its ratio means nothing;
    # small fetches and slices so that several of each are crossed.
    from loadtest.engine_batch_bench import batch_path, per_event_path, without_hits
    from loadtest.engine_bench import sample_events
    from service.rules.loader import load_pack
    from service.settings import bundled_rules_dir

    engine = load_pack(bundled_rules_dir())
    raw = sample_events(600)
    assert batch_path(engine, raw, fetch=250, slice_chars=2000) == per_event_path(engine, raw)
    clean = without_hits(engine, raw)
    assert 0 < len(clean) < len(raw)
    assert all(b'"matches":[]' in record for record in per_event_path(engine, clean))
