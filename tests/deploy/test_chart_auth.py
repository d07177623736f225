"""Secure by default: the chart always hands the pod both key lists, or renders open only when told to.

Keys come from values, from an existing Secret, or are generated into the chart's Secret (kept across
upgrades through `lookup`). The last tests start the real `redline serve` with the environment the
rendered Deployment gives the container and run the chart's `helm test` script against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest
import yaml

from tests.deploy.chart import NAMESPACE, RELEASE, manifests, only, render
from tests.deploy.tools import CHART, PACK, REPO, free_port, stop, wait_for

SECRET = f"{RELEASE}-secrets"
GENERATED_KEY = re.compile(r"^[A-Za-z0-9]{40}$")
HELM_TEST_SCRIPT = CHART / "files" / "helm-test.py"
STARTUP_SECONDS = 30.0


def _secret(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "Secret")


def _env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _key_ref(name: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def test_default_render_generates_both_key_lists() -> None:
    objects = manifests({})
    secret = _secret(objects)
    data = secret["stringData"]
    assert GENERATED_KEY.match(data["api-keys"]) and GENERATED_KEY.match(data["admin-keys"])
    assert data["api-keys"] != data["admin-keys"]
    assert secret["metadata"]["annotations"]["redline/generated-keys"] == "admin-keys,api-keys"
    env = _env(objects)
    assert env["REDLINE_API_KEYS"] == _key_ref(SECRET, "api-keys")
    assert env["REDLINE_ADMIN_KEYS"] == _key_ref(SECRET, "admin-keys")
    assert "REDLINE_ALLOW_UNAUTHENTICATED" not in env


def test_every_template_sees_the_same_generated_keys() -> None:
    """Secret, checksum annotation and test Pod agree within one render; each `helm template` run differs."""
    rendered = render({})
    secret_text = rendered["redline/templates/secret.yaml"]
    texts = [text for path, text in rendered.items() if not path.endswith("NOTES.txt")]
    objects = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    annotations = only(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/secret"] == hashlib.sha256(secret_text.encode()).hexdigest()
    again = _secret(manifests({}))["stringData"]
    assert again["api-keys"] != _secret(objects)["stringData"]["api-keys"]  # no cluster to look up


def test_keys_given_in_values_are_used_and_only_missing_lists_generated() -> None:
    objects = manifests({"auth": {"apiKeys": ["k-one", "k-two"]}})
    secret = _secret(objects)
    assert secret["stringData"]["api-keys"] == "k-one,k-two"
    assert GENERATED_KEY.match(secret["stringData"]["admin-keys"])
    assert secret["metadata"]["annotations"]["redline/generated-keys"] == "admin-keys"
    both = _secret(manifests({"auth": {"apiKeys": ["a"], "adminKeys": ["b"]}}))
    assert both["stringData"] == {"api-keys": "a", "admin-keys": "b"}
    assert "annotations" not in both["metadata"]


def test_existing_secret_is_required_not_generated() -> None:
    objects = manifests({"auth": {"existingSecret": "redline-keys"}})
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = _env(objects)
    # not optional: a Secret without the key stops the pod (CreateContainerConfigError), never an open one
    assert env["REDLINE_API_KEYS"] == _key_ref("redline-keys", "api-keys")
    assert env["REDLINE_ADMIN_KEYS"] == _key_ref("redline-keys", "admin-keys")
    hook = only(objects, "Pod")["spec"]["containers"][0]
    assert {"name": "API_KEYS", "valueFrom": _key_ref("redline-keys", "api-keys")} in hook["env"]


def test_allow_unauthenticated_is_the_only_way_to_render_without_keys() -> None:
    values = {"auth": {"allowUnauthenticated": True}}
    objects = manifests(values)
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = _env(objects)
    assert env["REDLINE_ALLOW_UNAUTHENTICATED"] == "true"
    assert not {"REDLINE_API_KEYS", "REDLINE_ADMIN_KEYS"} & set(env)
    notes = render(values)["redline/templates/NOTES.txt"]
    assert "WARNING: auth.allowUnauthenticated is true" in notes
    assert "refused without admin keys" in notes
    # keys given explicitly still reach the pod
    given = _env(manifests({"auth": {"allowUnauthenticated": True, "adminKeys": ["adm"]}}))
    assert given["REDLINE_ADMIN_KEYS"] == _key_ref(SECRET, "admin-keys")
    assert "REDLINE_API_KEYS" not in given


def _data(secret: dict[str, Any]) -> dict[str, str]:
    """The Secret as the API server stores it: stringData folded into base64 data."""
    return {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}


@pytest.mark.parametrize("values", [{}, {"auth": {"existingSecret": "redline-keys"}}, {"auth": {"apiKeys": ["a"]}}])
def test_notes_say_how_to_read_the_keys_and_call_check(values: dict[str, Any]) -> None:
    notes = render(values)["redline/templates/NOTES.txt"]
    objects = manifests(values)
    secret_name = values.get("auth", {}).get("existingSecret") or SECRET
    stored = _data(_secret(objects)) if secret_name == SECRET else {"api-keys": "", "admin-keys": ""}
    for variable, key in (("API_KEY", "api-keys"), ("ADMIN_KEY", "admin-keys")):
        command = f"{variable}=$(kubectl -n {NAMESPACE} get secret {secret_name} -o jsonpath='{{.data.{key}}}'"
        assert command + " | base64 -d | cut -d, -f1)" in notes
        assert key in stored
    assert '-H "authorization: Bearer $API_KEY"' in notes
    assert '/rules/reload -H "authorization: Bearer $ADMIN_KEY"' in notes
    if secret_name == SECRET:
        # the pipeline in the notes gives back the first key the pod was given
        decoded = subprocess.run(["base64", "-d"], input=stored["api-keys"], capture_output=True, text=True,
                                 check=True).stdout
        assert decoded.split(",")[0] == _secret(objects)["stringData"]["api-keys"].split(",")[0]


# --- upgrades: `lookup` finds the Secret of the previous release --------------------------------------

def _chart_with_previous_secret(tmp_path: Path, previous: dict[str, Any]) -> helm.Chart:
    """A copy of the chart whose `lookup` of the release's Secret answers `previous`.

    Only the one-line `redline.previousSecret` helper is swapped (no cluster here); the logic that
    decides which keys to keep runs unchanged in Helm's engine.
    """
    copy = tmp_path / "redline"
    shutil.copytree(CHART, copy)
    helpers = copy / "templates" / "_helpers.tpl"
    text = helpers.read_text(encoding="utf-8")
    lookup = '{{- lookup "v1" "Secret" .Release.Namespace (include "redline.secretName" .) | toJson }}'
    assert lookup in text
    helpers.write_text(text.replace(lookup, '{{- .Files.Get "previous-secret.json" }}'), encoding="utf-8")
    (copy / "previous-secret.json").write_text(json.dumps(previous), encoding="utf-8")
    return helm.Chart.load(copy)


def _previous(data: dict[str, str], generated: str | None) -> dict[str, Any]:
    annotations = {"redline/generated-keys": generated} if generated is not None else {}
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE, "annotations": annotations},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _upgrade_secret(chart: helm.Chart, values: dict[str, Any]) -> dict[str, Any]:
    text = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)["redline/templates/secret.yaml"]
    secret: dict[str, Any] = yaml.safe_load(text)
    return secret


def test_upgrade_keeps_the_keys_it_generated(tmp_path: Path) -> None:
    old = {"api-keys": "A" * 40, "admin-keys": "B" * 40}
    chart = _chart_with_previous_secret(tmp_path, _previous(old, "admin-keys,api-keys"))
    secret = _upgrade_secret(chart, {})
    assert secret["stringData"] == old
    assert secret["metadata"]["annotations"]["redline/generated-keys"] == "admin-keys,api-keys"


def test_upgrade_replaces_keys_the_values_gave_before(tmp_path: Path) -> None:
    """Keys an earlier release took from values are not "generated": dropping them from values rotates them."""
    old = {"api-keys": "given-before", "admin-keys": "B" * 40}
    chart = _chart_with_previous_secret(tmp_path, _previous(old, "admin-keys"))
    secret = _upgrade_secret(chart, {})
    assert secret["stringData"]["admin-keys"] == "B" * 40
    assert GENERATED_KEY.match(secret["stringData"]["api-keys"])
    assert secret["stringData"]["api-keys"] != "given-before"
    # and values always win over a generated key
    assert _upgrade_secret(chart, {"auth": {"adminKeys": ["mine"]}})["stringData"]["admin-keys"] == "mine"


def test_upgrade_ignores_a_secret_without_the_annotation(tmp_path: Path) -> None:
    chart = _chart_with_previous_secret(tmp_path, _previous({"api-keys": "x", "admin-keys": "y"}, None))
    data = _upgrade_secret(chart, {})["stringData"]
    assert GENERATED_KEY.match(data["api-keys"]) and GENERATED_KEY.match(data["admin-keys"])


# --- the real service with the chart's environment, and the `helm test` script against it -------------

def _container_env(objects: list[dict[str, Any]], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it from the rendered env and Secrets."""
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{entry['name']}: Secret {ref['name']} has no key {ref['key']}"
            continue
        env[entry["name"]] = value
    return env


def _hook_env(objects: list[dict[str, Any]], secrets: dict[str, dict[str, str]], url: str) -> dict[str, str]:
    container = only(objects, "Pod")["spec"]["containers"][0]
    assert container["command"][:2] == ["python3", "-c"]
    assert container["command"][2] == HELM_TEST_SCRIPT.read_text(encoding="utf-8")  # the script tested here
    env: dict[str, str] = {}
    for entry in container["env"]:
        if entry["name"] == "TARGET_URL":
            assert entry["value"] == f"http://{RELEASE}.{NAMESPACE}.svc:8080"
            env["TARGET_URL"] = url  # the Service's DNS name, here the local server
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
    return env


class Release:
    def __init__(self, objects: list[dict[str, Any]], url: str, secrets: dict[str, dict[str, str]]) -> None:
        self.objects, self.url, self.secrets = objects, url, secrets

    def helm_test(self, **override: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
        env.update(_hook_env(self.objects, self.secrets, self.url), **override)
        return subprocess.run([sys.executable, "-c", HELM_TEST_SCRIPT.read_text(encoding="utf-8")], env=env,
                              capture_output=True, text=True, timeout=60)


@contextmanager
def _serve(values: dict[str, Any], tmp_path: Path) -> Iterator[Release]:
    objects = manifests(values)
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret"}
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")}
    env.update(_container_env(objects, secrets))
    assert env["REDLINE_HTTP_HOST"] == "0.0.0.0"  # kept: the service sees a non-loopback address, as in a pod
    env.update(REDLINE_HTTP_PORT=str(port), REDLINE_RULES=str(PACK))  # the image's pack path does not exist here
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "service", "serve"], cwd=REPO, env=env,
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("redline /readyz", lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
                 STARTUP_SECONDS, process)
        yield Release(objects, url, secrets)
    finally:
        stop(process)
        if process.returncode not in (0, None):
            print(log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def default_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    with _serve({}, tmp_path_factory.mktemp("default-release")) as release:
        yield release


def test_default_release_guards_check_and_admin_routes(default_release: Release) -> None:
    keys = default_release.secrets[SECRET]
    url = default_release.url
    event = {"id": "e1", "text": "hello"}
    assert httpx.post(f"{url}/check", json=event, timeout=10).status_code == 401
    ok = httpx.post(f"{url}/check", json=event, headers={"authorization": f"Bearer {keys['api-keys']}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["event_id"] == "e1"
    reload_url = f"{url}/rules/reload"
    with_check_key = httpx.post(reload_url, headers={"authorization": f"Bearer {keys['api-keys']}"}, timeout=30)
    assert with_check_key.status_code == 403
    admin = httpx.post(reload_url, headers={"authorization": f"Bearer {keys['admin-keys']}"}, timeout=120)
    assert admin.status_code == 200, admin.text
    # probes and metrics stay open: the kubelet and Prometheus carry no key
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, path


def test_helm_test_script_passes_against_the_release(default_release: Release) -> None:
    result = default_release.helm_test()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("verdict allow from pack mini")


def test_helm_test_script_fails_on_a_wrong_key(default_release: Release) -> None:
    result = default_release.helm_test(API_KEYS="not-the-key")
    assert result.returncode == 1
    assert "POST /check answered 401" in result.stderr


def test_helm_test_script_fails_when_check_is_open(tmp_path: Path) -> None:
    """A release whose /check answers without a key fails `helm test` when it was given keys."""
    with _serve({"auth": {"allowUnauthenticated": True}}, tmp_path) as release:
        assert release.helm_test().returncode == 0  # no keys given: an open /check is what was asked for
        result = release.helm_test(API_KEYS="some-key")
    assert result.returncode == 1
    assert "POST /check without a key answered 200, expected 401" in result.stderr
