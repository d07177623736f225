"""Alert and recording rules: promtool's syntax check and its unit tests (tests/deploy/rules.promtool.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.tools import CHART, REPO, RULES_FILE, require_binary
from tests.docs.markdown import markdown_anchors

UNIT_TESTS = Path(__file__).with_name("rules.promtool.yaml")
REQUIRED_ALERTS = {
    "RedlineConsumerLagGrowing", "RedlineNoVerdicts", "RedlineDeadLetterRateHigh", "RedlineHTTPErrorRateHigh",
    "RedlineStreamErrors", "RedlineStreamMemberRestarting",
    "RedlineRulePackReloadFailed", "RedlineRulePackMismatch",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests() -> None:
    result = _promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_and_documented() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == REQUIRED_ALERTS
    tested = {
        t["alertname"] for case in yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
        for t in case.get("alert_rule_test", []) if t.get("exp_alerts")
    }
    assert tested == set(alerts), "every alert needs a promtool case where it fires"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name


def test_every_runbook_url_points_at_a_section_of_the_deploy_guide() -> None:
    """`runbook_url` (the name Alertmanager and Grafana link) leads to an existing docs/deploy.md section
    of the same name, in the repository Chart.yaml names as home."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    page = f"{chart['home']}/blob/main/docs/deploy.md"
    anchors = markdown_anchors(REPO / "docs" / "deploy.md")
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    for rule in (r for g in rules["groups"] for r in g["rules"] if "alert" in r):
        base, _, section = rule["annotations"]["runbook_url"].partition("#")
        assert base == page, rule["alert"]
        assert section == rule["alert"].lower(), rule["alert"]
        assert section in anchors, f"docs/deploy.md has no section #{section}"
    # the checker sees a missing section
    assert "redlinenosuchalert" not in anchors
