"""The example pack of ci/ci-values.yaml is a pack the service serves: copied as is, it must not crash-loop.

The pack is rebuilt from the rendered ConfigMap exactly as the kubelet mounts it (items: key → path),
then the real `redline rules test` runs on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.chart import ci_values, manifests
from tests.deploy.tools import REPO


def _mount_rule_pack(values: dict[str, object], target: Path) -> Path:
    objects = manifests(values)
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "rules")
    name = volume["configMap"]["name"]
    config_map = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)
    for item in volume["configMap"]["items"]:
        path = target / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config_map["data"][item["key"]], encoding="utf-8")
    return target


def _rules_test(pack: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", "rules", "test", str(pack)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_ci_values_pack_passes_rules_test(tmp_path: Path) -> None:
    pack = _mount_rule_pack(ci_values(), tmp_path / "pack")
    assert (pack / "pack.yaml").is_file()
    result = _rules_test(pack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "examples passed" in result.stdout + result.stderr


def test_an_empty_pack_in_the_values_is_refused(tmp_path: Path) -> None:
    """The check above can fail: the values' former pack, with no rules, is refused by the same command."""
    values = ci_values()
    values["rules"]["files"] = {**values["rules"]["files"], "rules/main.yaml": "rules: []\n"}
    result = _rules_test(_mount_rule_pack(values, tmp_path / "pack"))
    assert result.returncode == 2, result.stdout + result.stderr  # 2: the pack is refused
