"""What a chart user meets besides the workload: metadata, the `helm test` hook, the Ingress, runbook links."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import ci_values, manifests, only, validate_schema
from tests.deploy.tools import CHART, REPO

KUBE_VERSION = "1.30.0"


def test_chart_metadata_is_complete() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["home"].startswith("https://")
    assert chart["home"] in chart["sources"]
    assert all(m["name"] and (m.get("url") or m.get("email")) for m in chart["maintainers"])
    assert {"moderation", "kafka"} <= set(chart["keywords"])
    assert chart["kubeVersion"] == ">=1.25.0-0"
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"
    assert chart["appVersion"] == chart["version"]


def test_license_file_is_the_apache_license_the_package_declares() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


# --- helm test ----------------------------------------------------------------------------------------

def _hook(values: dict[str, Any]) -> dict[str, Any]:
    return only(manifests(values), "Pod")


def test_helm_test_hook_is_a_restricted_test_pod() -> None:
    objects = manifests({})
    pod = only(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["image"] == only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_helm_test_pod_is_never_selected_as_a_release_pod() -> None:
    """The Service must not route to it, the PDB not count it, the NetworkPolicy not restrict its egress."""
    objects = manifests(ci_values())
    labels = only(objects, "Pod")["metadata"]["labels"]
    assert not _selects(only(objects, "Service")["spec"]["selector"], labels)
    assert not _selects(only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    policy = only(objects, "NetworkPolicy")
    assert not _selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    # ingressFrom is restricted in the CI values: the policy admits the test Pod by name
    peers = policy["spec"]["ingress"][0]["from"]
    assert any("podSelector" in p and _selects(p["podSelector"]["matchLabels"], labels) for p in peers)
    assert len(peers) == len(ci_values()["networkPolicy"]["ingressFrom"]) + 1


def test_helm_test_can_be_left_out() -> None:
    objects = manifests({"helmTest": {"enabled": False}, "networkPolicy": {"enabled": True,
                                                                            "ingressFrom": [{"podSelector": {}}]}})
    assert not [o for o in objects if o["kind"] == "Pod"]
    assert only(objects, "NetworkPolicy")["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]


def test_helm_test_without_keys_reads_no_secret() -> None:
    env = _hook({"auth": {"allowUnauthenticated": True}})["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["TARGET_URL"]


# --- ingress ------------------------------------------------------------------------------------------

def test_ingress_is_off_by_default() -> None:
    assert not [o for o in manifests({}) if o["kind"] == "Ingress"]


def test_ingress_routes_the_given_paths_to_the_service() -> None:
    values = ci_values()
    objects = manifests(values)
    ingress = only(objects, "Ingress")
    service = only(objects, "Service")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == values["ingress"]["annotations"]
    assert spec["tls"] == [{"secretName": "redline-tls", "hosts": ["redline.example.com"]}]
    [rule] = spec["rules"]
    assert rule["host"] == "redline.example.com"
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/check", "Prefix"), ("/rules", "Exact")]
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_ingress_defaults_expose_check_only_on_any_host() -> None:
    ingress = only(manifests({"ingress": {"enabled": True}}), "Ingress")
    [rule] = ingress["spec"]["rules"]
    assert "host" not in rule
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/check", "Prefix")]
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    two = only(manifests({"ingress": {"enabled": True, "hosts": ["a.example.com", "b.example.com"]}}), "Ingress")
    assert [r["host"] for r in two["spec"]["rules"]] == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize(
    "values",
    [
        {"ingress": {"enabled": "yes"}},
        {"ingress": {"hosts": ["https://redline.example.com"]}},  # a URL, not a host name
        {"ingress": {"paths": [{"path": "check", "pathType": "Prefix"}]}},  # relative path
        {"ingress": {"paths": [{"path": "/check", "pathType": "Regex"}]}},
        {"ingress": {"paths": []}},  # an Ingress rule without paths is invalid
        {"ingress": {"tls": [{"hosts": ["a.example.com"]}]}},  # no secretName
        {"ingress": {"tsl": []}},  # a typo
        {"helmTest": {"enable": True}},
        {"metrics": {"prometheusRule": {"runbookUrlBase": "wiki/redline"}}},
        {"auth": {"allowUnauthenticated": "true"}},  # a string, not a boolean
        {"auth": {"apiKeys": [" padded"]}},  # the service strips keys: a padded key could never match
    ],
)
def test_schema_rejects_bad_packaging_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        validate_schema(values)


# --- alerts -------------------------------------------------------------------------------------------

def _runbook_urls(values: dict[str, Any]) -> dict[str, str]:
    rule = only(manifests(values), "PrometheusRule")
    return {r["alert"]: r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]
            if "alert" in r}


def test_runbook_urls_can_point_at_the_operators_copy() -> None:
    default = _runbook_urls({"metrics": {"prometheusRule": {"enabled": True}}})
    moved = _runbook_urls({"metrics": {"prometheusRule": {"enabled": True,
                                                          "runbookUrlBase": "https://wiki.example/ops/redline/"}}})
    assert default.keys() == moved.keys() and len(moved) == 8
    for alert, url in moved.items():
        assert url == f"https://wiki.example/ops/redline#{alert.lower()}"
        assert default[alert].endswith(f"/docs/deploy.md#{alert.lower()}")

