"""Against a running `python -m service serve` (HTTP only) and a real Prometheus that scrapes it.

- `promtool check metrics` on a real scrape;
- every metric name in the dashboard and the rules is one the service really exports (histogram
  `_bucket/_sum/_count`, counter `_total`), and every `redline_*` family appears on the dashboard;
- Prometheus (Debian's) scrapes the service (`up == 1`), loads the rules file, evaluates them without
  errors, and the recording rules produce series; every dashboard query parses and runs there.
Bounded waits poll an HTTP endpoint; there are no fixed sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.promql import exposed_names, metric_names, substitute_grafana
from tests.deploy.tools import DASHBOARD_FILE, PACK, REPO, RULES_FILE, free_port, require_binary, stop, wait_for

STARTUP_SECONDS = 30.0


@pytest.fixture(scope="module")
def redline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    env.update(REDLINE_HTTP_HOST="127.0.0.1", REDLINE_HTTP_PORT=str(port), REDLINE_KAFKA_BOOTSTRAP="",
               REDLINE_RULES=str(PACK))
    log = tmp_path_factory.mktemp("redline") / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "service", "serve"], cwd=REPO, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("redline /readyz", lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
                  STARTUP_SECONDS, process)
        _exercise(url)
        yield url
    finally:
        stop(process)
        if process.returncode not in (0, None):
            print(log.read_text(errors="replace"))


def _exercise(url: str) -> None:
    """Traffic that touches verdicts, matches, errors and several routes, so labelled series exist."""
    with httpx.Client(base_url=url, timeout=5) as client:
        for number, text in enumerate(["hello", "you idiot", "这份是机密文件", "fine"]):
            event = {"id": f"e{number}", "text": text, "chat": {"id": "c1"}, "sent_at": "2026-01-01T00:00:00Z"}
            assert client.post("/check", json=event).status_code == 200
        malformed = client.post("/check", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code in (400, 422)
        assert client.get("/no-such-route").status_code == 404
        assert client.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def scrape(redline_url: str) -> str:
    response = httpx.get(f"{redline_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_promtool_check_metrics_on_a_real_scrape(scrape: str) -> None:
    result = subprocess.run([require_binary("promtool"), "check", "metrics"], input=scrape,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_names_follow_conventions(scrape: str) -> None:
    families = {line.split()[2]: line.split()[3] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    for name, kind in families.items():
        if not name.startswith("redline_") or name.endswith("_created"):
            continue
        assert kind in {"counter", "gauge", "histogram"}, name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: histograms here measure time, in seconds"


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if isinstance(query, str) and query.startswith("label_values("):
            inner = query[len("label_values("):].rsplit(",", 1)[0]
            exprs.append(inner)
    return exprs


def _rule_exprs() -> tuple[list[str], set[str]]:
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    every = [r for g in rules["groups"] for r in g["rules"]]
    return [r["expr"] for r in every], {r["record"] for r in every if "record" in r}


def test_dashboard_and_rules_use_only_exported_metrics(scrape: str) -> None:
    exported = exposed_names(scrape)
    rule_exprs, recorded = _rule_exprs()
    known = set(exported) | recorded
    unknown = {
        (name, expr) for expr in _dashboard_exprs() + rule_exprs for name in metric_names(expr) if name not in known
    }
    assert not unknown, "expressions reference metrics the service does not export:\n" + "\n".join(
        f"  {name}  in  {expr}" for name, expr in sorted(unknown)
    )


def test_dashboard_covers_every_redline_metric(scrape: str) -> None:
    families = {
        line.split()[2] for line in scrape.splitlines()
        if line.startswith("# TYPE redline_") and not line.split()[2].endswith("_created")
    }
    used = set().union(*(metric_names(e) for e in _dashboard_exprs()))
    missing = {f for f in families if not ({f, f + "_bucket", f + "_count", f + "_sum"} & used)}
    assert not missing, f"metrics without a dashboard panel: {sorted(missing)}"


@pytest.fixture(scope="module")
def prometheus_url(redline_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    target = redline_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{
            "job_name": "redline",
            "static_configs": [{"targets": [target], "labels": {"namespace": "ci"}}],
        }],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prometheus /-/ready", lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
                  STARTUP_SECONDS, process)
        yield url
    except AssertionError:
        print(log.read_text(errors="replace"))
        raise
    finally:
        stop(process)


def _query(url: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    body: dict[str, Any] = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body


def _series(url: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _query(url, expr)["data"]["result"]
    return result


# Recording rules that must have series with the stream off: HTTP traffic and pre-initialised counters.
HTTP_ONLY_RECORDINGS = (
    "job:redline_events_classified:rate5m",
    "job:redline_verdicts:rate5m",
    "job:redline_category_matches:rate5m",
    "job:redline_events_dead_lettered:rate5m",
    "job:redline_classify_duration_seconds:p99_5m",
    "job:redline_http_requests:rate5m",
    "job:redline_http_errors:ratio_rate5m",
)


def test_prometheus_scrapes_redline_and_evaluates_the_rules(prometheus_url: str, redline_url: str) -> None:
    wait_for("up == 1", lambda: [s["value"][1] for s in _series(prometheus_url, 'up{job="redline"}')] == ["1"],
              STARTUP_SECONDS)
    # more traffic between scrapes, so rates are non-zero
    _exercise(redline_url)
    for record in HTTP_ONLY_RECORDINGS:

        def recorded(name: str = record) -> bool:
            return bool(_series(prometheus_url, name))

        wait_for(f"{record} has series", recorded, STARTUP_SECONDS)
    classified = _series(prometheus_url, 'job:redline_events_classified:rate5m{source="http"}')
    assert classified[0]["metric"] == {"__name__": "job:redline_events_classified:rate5m",
                                       "job": "redline", "namespace": "ci", "source": "http"}
    wait_for("every rule evaluated", lambda: _rules_evaluated(prometheus_url), STARTUP_SECONDS)


def _rules_evaluated(url: str) -> bool:
    groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules, "no rules loaded"
    for rule in rules:
        assert rule["health"] != "err", f"{rule['name']}: {rule.get('lastError')}"
    return all(rule["health"] == "ok" for rule in rules)


def test_every_dashboard_query_runs_on_prometheus(prometheus_url: str) -> None:
    for expr in _dashboard_exprs():
        _query(prometheus_url, substitute_grafana(expr))


def test_packaged_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    assert Path(DASHBOARD_FILE).stat().st_size < 512 * 1024  # ConfigMaps hold at most 1 MiB


def test_metrics_reference_lists_every_redline_metric(scrape: str) -> None:
    doc = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    families = {
        line.split()[2] for line in scrape.splitlines()
        if line.startswith("# TYPE redline_") and not line.split()[2].endswith("_created")
    }
    missing = {f for f in families if f"| `{f}` |" not in doc}
    assert not missing, f"docs/deploy.md has no metrics-table row for {sorted(missing)}"
