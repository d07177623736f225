"""The Dockerfile: hadolint clean, and the properties the chart relies on (user, entrypoint, pack)."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.tools import REPO, require_binary

DOCKERFILE = REPO / "Dockerfile"


def _stages() -> list[list[str]]:
    """Instructions of each stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_hadolint_is_clean() -> None:
    result = subprocess.run([require_binary("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_multi_stage_with_dependencies_layered_before_the_source() -> None:
    builder, _final = _stages()
    copies = [i for i, line in enumerate(builder) if line.startswith("COPY ")]
    installs = [i for i, line in enumerate(builder) if "pip install" in line]
    # pyproject.toml and the tested versions alone, then the dependency install, then the source
    assert builder[copies[0]] == "COPY pyproject.toml ./"
    assert builder[copies[1]] == "COPY .ci/constraints.txt /tmp/constraints.txt"
    assert copies[1] < installs[0] < copies[2]
    assert "-c /tmp/constraints.txt" in builder[installs[0]] + builder[installs[0] - 1]
    assert any("COPY service" in builder[i] for i in copies[2:])


def test_final_stage_is_slim_non_root_and_serves() -> None:
    _, final = _stages()
    text = "\n".join(final)
    assert "apt-get install" not in text
    assert "gcc" not in text
    assert "g++" not in text  # the builder compiles pdqhash; the image ships no compiler
    assert "build-essential" not in text
    assert "COPY --from=builder /opt/redline /opt/redline" in text
    user = next(line for line in final if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 10000
    assert 'ENTRYPOINT ["redline"]' in final
    assert 'CMD ["serve"]' in final
    assert "REDLINE_RULES=/etc/redline/rules" in text  # the chart mounts packs over this path
    for label in ("title", "version", "revision", "created", "licenses", "description"):
        assert f"org.opencontainers.image.{label}=" in text


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    for needed in ("pyproject.toml", "README.md", "service/", "rules/"):
        assert f"!{needed}" in ignore
