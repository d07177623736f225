"""The Helm chart: lint, render, Kubernetes schemas, invariants, values documentation, settings mapping."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from service.rules.loader import load_pack
from service.settings import Settings
from tests.deploy.chart import NAMESPACE, ci_values, lint, manifests, only, render, validate_schema
from tests.deploy.tools import CHART, PACK, RULES_FILE, require_binary

KUBE_VERSION = "1.30.0"  # the oldest minor the chart is validated against; kubeVersion allows >=1.25
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}

VALUE_SETS = {"default": {}, "ci": ci_values()}


@pytest.fixture(params=sorted(VALUE_SETS), ids=sorted(VALUE_SETS))
def values(request: pytest.FixtureRequest) -> dict[str, Any]:
    chosen: dict[str, Any] = VALUE_SETS[request.param]
    return chosen


def test_lint_is_clean(values: dict[str, Any]) -> None:
    report = lint(values)
    assert report["errors"] == []
    # severity 2 = warning, 3 = error; the only info-level note allowed is the missing icon
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_values_pass_the_schema(values: dict[str, Any]) -> None:
    validate_schema(values)


def test_manifests_validate_against_kubernetes_schemas(values: dict[str, Any]) -> None:
    objects = manifests(values)
    checked = 0
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # no upstream schema in kubernetes-validate: checked field by field below
        # strict: unknown fields are errors too (a typo in a template would otherwise pass)
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        checked += 1
    assert checked >= 4


def test_default_values_render_the_minimum() -> None:
    kinds = sorted(o["kind"] for o in manifests({}))
    # the Secret holds the generated keys (secure by default); the Pod is the `helm test` hook
    assert kinds == ["Deployment", "Pod", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]


def test_ci_values_render_every_optional_part() -> None:
    kinds = {o["kind"] for o in manifests(ci_values())}
    assert kinds == {
        "ConfigMap", "Deployment", "Ingress", "NetworkPolicy", "Pod", "PodDisruptionBudget", "PrometheusRule",
        "Secret", "Service", "ServiceAccount", "ServiceMonitor", "ScaledObject", "TriggerAuthentication",
    }
    hpa = manifests({"autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80}})
    only(hpa, "HorizontalPodAutoscaler")
    assert "replicas" not in only(hpa, "Deployment")["spec"]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(objects)["env"]}


def test_deployment_is_restricted_and_probed(values: dict[str, Any]) -> None:
    objects = manifests(values)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    # Restricted Pod Security Standard
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # /tmp is the only writable place
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    # Probes on the named port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    # Grace covers the preStop sleep, the drain and leaving the group
    drain = float(_env(objects)["REDLINE_DRAIN_TIMEOUT_SECONDS"])
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > sleep + drain + 15


def _assert_env_vars_are_settings(values: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name in _env(manifests(values)):
        assert name.startswith("REDLINE_"), name
        assert name.removeprefix("REDLINE_").lower() in fields, f"{name} is not a field of Settings"


def test_every_redline_env_var_is_a_setting(values: dict[str, Any]) -> None:
    """The chart sets only variables service/settings.py reads (a typo would be silently ignored)."""
    _assert_env_vars_are_settings(values)


def test_allow_unauthenticated_env_var_is_a_setting() -> None:
    _assert_env_vars_are_settings({"auth": {"allowUnauthenticated": True}})


def test_http_limits_reach_the_settings() -> None:
    """The request-size values arrive as the settings the API enforces (413 above them)."""
    env = _env(manifests({"http": {"maxBodyBytes": 2_097_152, "maxImageBytes": 26_214_400}}))
    settings = Settings(**{name.removeprefix("REDLINE_").lower(): env[name]
                           for name in ("REDLINE_MAX_BODY_BYTES", "REDLINE_MAX_IMAGE_BYTES")})
    assert (settings.max_body_bytes, settings.max_image_bytes) == (2_097_152, 26_214_400)
    assert _env(manifests({}))["REDLINE_MAX_IMAGE_BYTES"] == str(Settings().max_image_bytes)  # same default


def test_kafka_security_maps_to_settings_and_secrets() -> None:
    objects = manifests(ci_values())
    env = _env(objects)
    assert env["REDLINE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["REDLINE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # credentials come from the Secret, never inline in the pod spec
    password_ref = {"secretKeyRef": {"name": "redline-secrets", "key": "kafka-sasl-password"}}
    assert env["REDLINE_KAFKA_SASL_PASSWORD"] == password_ref
    assert env["REDLINE_KAFKA_SSL_CAFILE"] == "/etc/redline/kafka-tls/ca.crt"
    assert env["REDLINE_KAFKA_SSL_CERTFILE"] == "/etc/redline/kafka-tls/tls.crt"
    secret = only(objects, "Secret")
    assert secret["stringData"]["kafka-sasl-password"] == "not-a-real-password"
    assert secret["stringData"]["api-keys"] == "ci-api-key-1,ci-api-key-2"
    # PLAINTEXT by default: no SASL or TLS variables at all
    plain = _env(manifests({"kafka": {"bootstrap": "kafka:9092"}}))
    assert plain["REDLINE_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not {k for k in plain if "SASL" in k or "SSL" in k}


def test_existing_secrets_are_referenced_not_created() -> None:
    objects = manifests({
        "auth": {"existingSecret": "redline-keys"},
        "kafka": {"bootstrap": "kafka:9093", "securityProtocol": "SASL_PLAINTEXT",
                  "sasl": {"existingSecret": "kafka-user", "existingSecretPasswordKey": "pw"}},
    })
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = _env(objects)
    assert env["REDLINE_KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": "kafka-user", "key": "pw"}}
    assert env["REDLINE_API_KEYS"]["secretKeyRef"]["name"] == "redline-keys"


def test_crd_objects_are_consistent() -> None:
    objects = manifests(ci_values())
    service = only(objects, "Service")
    deployment = only(objects, "Deployment")
    monitor = only(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    scaled = only(objects, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    kafka = scaled["spec"]["triggers"][0]
    # KEDA's trigger metadata is map[string]string: a bare number or bool is rejected by its webhook
    assert all(isinstance(v, str) for v in kafka["metadata"].values())
    assert kafka["metadata"]["sasl"] == "scram_sha512"
    assert kafka["metadata"]["tls"] == "enable"
    auth = only(objects, "TriggerAuthentication")
    assert kafka["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password", "ca", "cert", "key"}


def test_prometheus_rule_embeds_the_tested_rules_file(tmp_path: Path) -> None:
    """One source of truth: the PrometheusRule carries files/prometheus/rules.yaml, and promtool accepts it."""
    values = ci_values()
    rule = only(manifests(values), "PrometheusRule")
    source = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    disabled = set(values["metrics"]["prometheusRule"]["disabledAlerts"])
    extra = values["metrics"]["prometheusRule"]["additionalAlertLabels"]
    expected = []
    for group in source["groups"]:
        rules = []
        for r in group["rules"]:
            if r.get("alert") in disabled:
                continue
            if "alert" in r:
                r = {**r, "labels": {**extra, **r.get("labels", {})}}
            rules.append(r)
        expected.append({"name": group["name"], "rules": rules})
    assert rule["spec"]["groups"] == expected
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    result = subprocess.run([require_binary("promtool"), "check", "rules", str(rendered)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_configmap_carries_the_dashboard() -> None:
    objects = manifests(ci_values())
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "redline.json").read_text(encoding="utf-8")
    assert dashboards[0]["data"]["redline.json"] == shipped.rstrip("\n")


def _pack_values(pack: Path) -> dict[str, str]:
    return {str(p.relative_to(pack)): p.read_text(encoding="utf-8") for p in sorted(pack.rglob("*")) if p.is_file()}


def test_rule_pack_configmap_mounts_back_into_a_loadable_pack(tmp_path: Path) -> None:
    """Pack files with subdirectories survive the flat ConfigMap keys and load as the same pack."""
    objects = manifests({"rules": {"files": _pack_values(PACK)}})
    data = only(objects, "ConfigMap")["data"]
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "rules")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "rules")
    assert "subPath" not in mount  # ConfigMap updates never reach subPath mounts
    for item in volume["configMap"]["items"]:  # what the kubelet does
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]], encoding="utf-8")
    assert load_pack(tmp_path).ruleset.digest == load_pack(PACK).ruleset.digest


def _pod_annotations(values: dict[str, Any]) -> dict[str, str]:
    template = only(manifests(values), "Deployment")["spec"]["template"]
    annotations: dict[str, str] = template["metadata"].get("annotations") or {}
    return annotations


def test_pack_changes_roll_pods_unless_hot_reload() -> None:
    files = _pack_values(PACK)
    before = _pod_annotations({"rules": {"files": files}})["checksum/rules"]
    changed = {**files, "pack.yaml": files["pack.yaml"] + "\n# edited\n"}
    assert _pod_annotations({"rules": {"files": changed}})["checksum/rules"] != before
    hot = {"rules": {"files": files, "hotReload": True}}
    assert "checksum/rules" not in _pod_annotations(hot)
    assert _env(manifests(hot))["REDLINE_RULES_WATCH"] == "true"
    # the image's default pack: nothing mounted over it
    assert "checksum/rules" not in _pod_annotations({})
    assert [v["name"] for v in only(manifests({}), "Deployment")["spec"]["template"]["spec"]["volumes"]] == ["tmp"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # grace shorter than preStop + drain + 15 s: Kubernetes would kill the pod mid-drain
        ({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds"),
        ({"kafka": {"drainTimeoutSeconds": 60}}, "terminationGracePeriodSeconds"),
        # KEDA owns its own HPA
        ({"autoscaling": {"enabled": True}, "keda": {"enabled": True}, "kafka": {"bootstrap": "k:9092"}}, "exclusive"),
        ({"keda": {"enabled": True}}, "needs kafka.bootstrap"),
        # hot reload of the image's baked-in pack cannot see changes
        ({"rules": {"hotReload": True}}, "rules.hotReload"),
        ({"rules": {"files": {"rules/a.yaml": "rules: []"}}}, "pack.yaml"),
        ({"kafka": {"bootstrap": "k:9093", "securityProtocol": "SASL_SSL"}}, "kafka.sasl.username"),
        ({"kafka": {"tls": {"clientCert": True}}}, "kafka.tls.existingSecret"),
    ],
)
def test_invariants_fail_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCnt": 3},  # a typo at the top level
        {"kafka": {"securityProtocol": "SASL_TLS"}},  # not a protocol
        {"kafka": {"sasl": {"mechanism": "GSSAPI"}}},  # not supported by the service
        {"image": {"digest": "latest"}},
        {"auth": {"apiKeys": ["a,b"]}},  # a comma would split one key into two
        {"rules": {"files": {"../escape.yaml": "x"}}},
        {"http": {"maxImageBytes": 0}},  # the service refuses 0 at start
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        validate_schema(values)


def _values_doc_gaps(text: str) -> list[str]:
    """Leaf keys of values.yaml documented neither on themselves nor on an ancestor with `# --`."""
    gaps: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, covered)
    lines = text.splitlines()
    key_line = re.compile(r"^(\s*)(- )?([A-Za-z0-9_.-]+):(.*)$")
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match.group(1)) + (2 if match.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
            above -= 1
        documented = above >= 0 and lines[above].strip().startswith("# --")
        covered = documented or any(c for _, _, c in stack)
        path = ".".join([k for _, k, _ in stack] + [match.group(3)])
        rest = match.group(4).strip()
        following = next((ln for ln in lines[number + 1:] if ln.strip() and not ln.strip().startswith("#")), "")
        is_leaf = bool(rest) or len(following) - len(following.lstrip()) <= len(match.group(1))
        if is_leaf and not covered:
            gaps.append(path)
        stack.append((indent, match.group(3), covered))
    return gaps


def test_every_value_is_documented() -> None:
    assert _values_doc_gaps((CHART / "values.yaml").read_text(encoding="utf-8")) == []
    # the checker itself notices an undocumented key
    assert _values_doc_gaps("a:\n  # -- doc\n  b: 1\n  c: 2\n") == ["a.c"]


def _schema_mismatches(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    if not isinstance(values, dict) or "properties" not in schema:
        return []
    props: dict[str, Any] = schema["properties"]
    wanted = set(props) - {"global"}
    problems = [f"{path}{k}: in values.yaml, not in the schema" for k in sorted(set(values) - wanted)]
    problems += [f"{path}{k}: in the schema, not in values.yaml" for k in sorted(wanted - set(values))]
    for key in sorted(set(values) & wanted):
        problems += _schema_mismatches(values[key], props[key], f"{path}{key}.")
    return problems


def test_schema_and_values_describe_the_same_keys() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert _schema_mismatches(values, schema) == []


def test_notes_render_for_both_value_sets(values: dict[str, Any]) -> None:
    notes = render(values)["redline/templates/NOTES.txt"]
    assert "port-forward svc/redline" in notes


def test_values_table_in_the_chart_readme_is_current() -> None:
    """helm/redline/README.md carries exactly the table helm/values_table.py makes from the `# --` comments."""
    spec = importlib.util.spec_from_file_location("values_table", CHART.parent / "values_table.py")
    assert spec is not None and spec.loader is not None
    values_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(values_table)
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert values_table.with_table(readme) == readme, "regenerate the table: python helm/values_table.py --write"
    rows = values_table.rows((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert len(rows) > 100
    # every documented leaf of the values has its row (the comment parser misses none)
    documented = {row.split("`")[1] for row in rows}
    assert {"auth.allowUnauthenticated", "ingress.tls", "helmTest.enabled", "kafka.sasl.password"} <= documented
    # and the script itself notices a stale table
    assert values_table.with_table(readme.replace(rows[0], "| `stale` | | |")) == readme
