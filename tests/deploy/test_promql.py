"""The PromQL name extractor the dashboard/rules checks rely on."""

from __future__ import annotations

import pytest

from tests.deploy.promql import exposed_names, metric_names, substitute_grafana


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        # plain rate with matchers and a Grafana interval
        ('sum(rate(redline_verdicts_total{job=~"$job", action="block"}[$__rate_interval]))',
         {"redline_verdicts_total"}),
        # grouping clauses and label names inside them are not metrics
        ("sum by (le, source) (rate(a_bucket[5m]))", {"a_bucket"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m])))", {"b_bucket"}),
        # binary operators, on/ignoring, numbers with exponents, offsets
        ("x_total / on (job) group_left y_total > 1e-05", {"x_total", "y_total"}),
        ("rate(x_total[5m] offset 1h) unless z", {"x_total", "z"}),
        # recording-rule names contain colons
        ("job:redline_lag:sum > 1000 and deriv(job:redline_lag:sum[10m]) > 0", {"job:redline_lag:sum"}),
        # label values that look like metric names are ignored
        ('count(redline_rule_pack_info{digest="sha256:abc", name="up"})', {"redline_rule_pack_info"}),
        # time() and friends are functions
        ("time() - max by (instance) (t_seconds)", {"t_seconds"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_substitute_grafana_keeps_valid_promql() -> None:
    assert substitute_grafana('rate(x{a=~"$a", b=~"${b}"}[$__rate_interval])') == 'rate(x{a=~".*", b=~".*"}[1m])'


def test_exposed_names_expands_histograms() -> None:
    text = "# TYPE h histogram\n# TYPE c_total counter\n# TYPE g gauge\n"
    assert set(exposed_names(text)) == {"h_bucket", "h_sum", "h_count", "c_total", "g"}
