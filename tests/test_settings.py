"""Configuration: every bad value and every unknown REDLINE_* name is one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent

BAD = [
    # (environment, the line it must give)
    ({"REDLINE_HTTP_PORT": "70000"}, "REDLINE_HTTP_PORT=70000: must be at most 65535"),
    ({"REDLINE_HTTP_PORT": "-1"}, "REDLINE_HTTP_PORT=-1: must be at least 1"),
    ({"REDLINE_HTTP_PORT": "abc"}, "REDLINE_HTTP_PORT=abc: must be a whole number"),
    ({"REDLINE_RULES_WATCH": "maybe"}, "REDLINE_RULES_WATCH=maybe: must be true or false (also 1/0, yes/no, on/off)"),
    ({"REDLINE_DRAIN_TIMEOUT_SECONDS": "soon"}, "REDLINE_DRAIN_TIMEOUT_SECONDS=soon: must be a number"),
    ({"REDLINE_DRAIN_TIMEOUT_SECONDS": "0"}, "REDLINE_DRAIN_TIMEOUT_SECONDS=0: must be more than 0"),
    (
        {"REDLINE_LOG_LEVEL": "verbose"},
        "REDLINE_LOG_LEVEL=verbose: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'",
    ),
    (
        {"REDLINE_PRODUCER_COMPRESSION": "brotli"},
        "REDLINE_PRODUCER_COMPRESSION=brotli: must be one of 'none', 'gzip', 'snappy', 'lz4' or 'zstd'",
    ),
    ({"REDLINE_STREAM_PROCESSES": "0"}, "REDLINE_STREAM_PROCESSES=0: must be at least 1, or must be one of 'auto'"),
    ({"REDLINE_HTTP_HOST": ""}, "REDLINE_HTTP_HOST=: must not be empty"),
    (
        {"REDLINE_KAFKA_SECURITY_PROTOCOL": "KERBEROS"},
        "REDLINE_KAFKA_SECURITY_PROTOCOL=KERBEROS: must be one of 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'",
    ),
    (
        {"REDLINE_KAFKA_SASL_MECHANISM": "GSSAPI"},
        "REDLINE_KAFKA_SASL_MECHANISM=GSSAPI: must be one of 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
    ),
    ({"REDLINE_RULE": "/packs/mine"}, "REDLINE_RULE is not a Redline setting (did you mean REDLINE_RULES?)"),
    ({"REDLINE_HTTP_PROT": "9000"}, "REDLINE_HTTP_PROT is not a Redline setting (did you mean REDLINE_HTTP_PORT?)"),
    ({"REDLINE_NONSENSE_THING": "1"}, "REDLINE_NONSENSE_THING is not a Redline setting; docs/configuration.md"),
]


@pytest.mark.parametrize(("environ", "line"), BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_a_bad_setting_is_one_clear_line(environ: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(line)


def test_every_problem_is_listed_at_once() -> None:
    environ = {"REDLINE_HTTP_PORT": "0", "REDLINE_RULE": "x", "REDLINE_API_KEYS": "k"}
    flags = {"http_port": ("--port", 99999)}
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, environ=environ)
    assert str(caught.value).splitlines() == [
        "REDLINE_RULE is not a Redline setting (did you mean REDLINE_RULES?); docs/configuration.md lists them",
        "--port=99999: must be at most 65535",  # a flag is named as typed, and wins over the variable
    ]


def test_kubernetes_service_links_are_not_typos() -> None:
    # A Service named "redline" makes Kubernetes inject these into every pod of the namespace.
    links = {
        "REDLINE_SERVICE_HOST": "10.0.0.7",
        "REDLINE_SERVICE_PORT": "8080",
        "REDLINE_SERVICE_PORT_HTTP": "8080",
        "REDLINE_PORT": "tcp://10.0.0.7:8080",
        "REDLINE_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "REDLINE_PORT_8080_TCP_ADDR": "10.0.0.7",
    }
    assert load_settings(environ=links) == Settings.model_validate({})


def test_good_values_are_read_typed() -> None:
    settings = load_settings(
        {"rules": ("--rules", Path("/p"))},
        environ={"REDLINE_HTTP_PORT": "9000", "REDLINE_LOG_LEVEL": "debug", "REDLINE_STREAM_PROCESSES": "2",
                 "REDLINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "REDLINE_RULES_WATCH": "yes"},
    )
    assert (settings.http_port, settings.log_level, settings.stream_processes) == (9000, "DEBUG", 2)
    assert (settings.kafka_security_protocol, settings.rules_watch, settings.rules) == ("SASL_SSL", True, Path("/p"))


def _redline(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")} | environ
    command = [sys.executable, "-m", "service", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", [["serve"], ["check", "--text", "hi"], ["dev", "--duration", "1"]])
def test_the_cli_exits_2_with_the_lines_and_no_traceback(command: list[str]) -> None:
    result = _redline(*command, REDLINE_HTTP_PORT="70000", REDLINE_RULE="/x")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"redline {command[0]}: REDLINE_RULE is not a Redline setting (did you mean REDLINE_RULES?); "
        "docs/configuration.md lists them",
        f"redline {command[0]}: REDLINE_HTTP_PORT=70000: must be at most 65535",
    ]


def test_serve_refuses_the_network_without_keys_unless_told() -> None:
    result = _redline("serve", REDLINE_HTTP_HOST="0.0.0.0")
    assert result.returncode == 2
    assert "without keys: set REDLINE_API_KEYS" in result.stderr
    assert len(result.stderr.splitlines()) == 1
