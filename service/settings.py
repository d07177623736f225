"""The one reader of the environment: every knob of the configuration contract, typed and bounded.

Variables are `REDLINE_<FIELD>` (docs/configuration.md lists them). CLI flags override them;
nothing deeper in the package reads `os.environ`. `load_settings` is how the commands build their
settings: every invalid value and every unknown `REDLINE_*` name becomes one line of a
`ConfigError` (the CLI prints them and exits 2), never a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ConfigError


def bundled_rules_dir() -> Path:
    """The default pack: inside the wheel when installed, at the repository top when editable."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "bundled_rules" / "redlines", here.parent / "rules" / "redlines"):
        if candidate.is_dir():
            return candidate
    return here.parent / "rules" / "redlines"


def _split_keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDLINE_", extra="ignore")

    # --- rules
    rules: Path = Field(default_factory=bundled_rules_dir)
    rules_watch: bool = False  # reload when a file of the pack directory changes
    # What a pack may cost to load (service/rules/budget.py); over any of them it is refused.
    # The default pack: 176 KiB, 5,507 patterns, ~2 s and ~200 MiB to compile.
    pack_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024, le=16 * 1024**3)
    pack_max_patterns: int = Field(default=100_000, ge=1, le=10_000_000)
    pack_compile_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    pack_compile_max_memory_bytes: int = Field(default=2 * 1024**3, ge=64 * 1024**2, le=256 * 1024**3)

    # --- stream
    kafka_bootstrap: str = ""
    input_topic: str = "chat.events"
    output_topic: str = "chat.verdicts"
    dlq_topic: str = "chat.events.dlq"
    group_id: str = "redline"
    create_topics: bool = True  # create missing topics on start (needs the broker's permission)
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    event_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    # Verdicts are the audit trail: chat-log rules ask for at least six months.
    verdict_retention_ms: int = Field(default=180 * 24 * 3600 * 1000, ge=-1)
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)
    max_record_bytes: int = Field(default=1024 * 1024, ge=1)  # larger input records are dead-lettered
    # A dead letter keeps the original value up to this size; beyond it the value is omitted and a
    # header gives the original size (the DLQ topic is created to accept this size).
    dead_letter_max_value_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Records per getmany → classify → produce. 5000 measured 15-25% more events/s than 2000 with
    # stream processes (less CPU per event: 9.3 vs 11 µs per process; docs/benchmarks.md).
    batch_max_records: int = Field(default=5000, ge=1)
    max_in_flight_batches: int = Field(default=4, ge=1)  # un-acked batches before the consumer pauses
    poll_timeout_ms: int = Field(default=200, ge=0)
    # Stream member processes, each a full consumer in the group (docs/stream.md): 1 = the stream
    # runs in the serving process; auto = one per CPU this process may use (affinity and cgroup
    # quota), at most topic_partitions, at least 1.
    stream_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    fetch_max_wait_ms: int = Field(default=50, ge=0)  # the broker's wait for data: bounds idle latency
    drain_timeout_seconds: float = Field(default=10.0, gt=0)
    # Delivery (docs/stream.md): at_least_once works on every Kafka-compatible broker (tansu, the
    # embedded broker of `redline dev`, has no transactions) and needs no ACL for transactional ids
    # nor read_committed readers; exactly_once needs all three, so it is asked for, not assumed.
    delivery: Literal["exactly_once", "at_least_once"] = "at_least_once"
    # exactly_once: a partition's transaction commits once it is this old (the latency it adds;
    # each commit takes a few broker round trips, 11–31 ms here: docs/stream.md, *Exactly once*).
    transaction_interval_ms: int = Field(default=100, ge=1, le=60_000)
    # exactly_once: the broker aborts a transaction left open this long (a member that died with one
    # open holds read_committed readers of its topics up to this long, unless its successor aborts it).
    transaction_timeout_ms: int = Field(default=10_000, ge=1000, le=900_000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=1024)
    # none|gzip|snappy|lz4|zstd. zstd: verdict batches measured 1.0 µs per record to build and
    # compress and ~10 bytes per record on the wire; aiokafka's lz4 (level 9) 2.3 µs and ~25 bytes.
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    producer_request_timeout_ms: int = Field(default=15_000, ge=1000)
    retry_backoff_max_seconds: float = Field(default=10.0, gt=0)
    broker_probe_interval_seconds: float = Field(default=2.0, gt=0)
    # Counters (`seen` conditions, docs/counters.md): requests keyed by counter key on an internal
    # topic, each key's state in a compacted changelog; the owners form the group `<group_id>.counters`.
    counter_topic: str = ""  # empty: "<group_id>.counters" (one deployment, one set of counters)
    counter_changelog_topic: str = ""  # empty: "<counter topic>.changelog"
    counter_request_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    counter_max_keys: int = Field(default=1_000_000, ge=1)  # per replica; least recently updated evicted
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True

    # --- http
    http_host: str = Field(default="0.0.0.0", min_length=1)
    http_port: int = Field(default=8080, ge=1, le=65535)
    # Without API keys, `serve` refuses to listen on a non-loopback address unless this says the
    # service is meant to be open (e.g. behind an authenticating proxy); docs/api.md#auth.
    allow_unauthenticated: bool = False
    api_keys: str = ""
    admin_keys: str = ""
    # The HTTP front (service/api/connection_guard.py), before the app sees a request: connections
    # beyond the cap get 503, heads beyond the size or count 431, heads and bodies slower than
    # their timeouts 408, malformed requests 400, all as JSON; idle keep-alive connections close.
    http_max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    http_max_headers: int = Field(default=100, ge=1, le=10_000)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    http_keepalive_timeout_seconds: int = Field(default=5, ge=1, le=3600)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)  # 413 above; Content-Length and streamed
    max_batch_events: int = Field(default=1000, ge=1)  # POST /check/batch: 422 above
    # Per event, on every door (service/admission.py): text, file.name and link.url characters, and
    # media.pdq hashes (video frames). Above: HTTP 422, a CLI error line, a `too_large` dead letter.
    max_text_chars: int = Field(default=65536, ge=1, le=16 * 1024 * 1024)
    max_media_hashes: int = Field(default=4096, ge=1, le=1_000_000)
    # POST /check images (upload part, or base64 `media.image` decoded): 413 above. An upload may
    # carry this plus max_body_bytes; a JSON body stays within max_body_bytes.
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    rules_watch_poll_seconds: float = Field(default=1.0, gt=0)  # pack-directory poll when rules_watch
    # Token bucket per bearer key (per client IP when auth is off); 0 = off. 429 with Retry-After.
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)  # bucket size; 0 = max(1, per_second)
    rate_limit_max_clients: int = Field(default=10_000, ge=1)  # tracked keys/IPs; oldest evicted
    # Failed authentication per client address: each 401 takes a token; an address without one gets
    # 429 on guarded routes until its bucket refills (service/api/auth.py). Always on.
    auth_failures_burst: int = Field(default=20, ge=1, le=1_000_000)
    auth_failures_per_second: float = Field(default=1.0, gt=0, le=1_000_000)

    # --- logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", "log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("producer_compression", "delivery", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def http_on_loopback(self) -> bool:
        host = self.http_host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def counter_requests_topic(self) -> str:
        return self.counter_topic or f"{self.group_id}.counters"

    @property
    def counter_state_topic(self) -> str:
        return self.counter_changelog_topic or f"{self.counter_requests_topic}.changelog"

    @property
    def api_key_set(self) -> tuple[str, ...]:
        return _split_keys(self.api_keys)

    @property
    def admin_key_set(self) -> tuple[str, ...]:
        return _split_keys(self.admin_keys)

    @property
    def exactly_once(self) -> bool:
        return self.delivery == "exactly_once"

    @property
    def stream_enabled(self) -> bool:
        return bool(self.kafka_bootstrap.strip())


PREFIX: Final = "REDLINE_"
# Kubernetes injects these for a Service named "redline" (service links): not settings, not typos.
_SERVICE_LINKS: Final = re.compile(r"REDLINE_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)")


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def load_settings(
    flags: Mapping[str, tuple[str, Any]] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from `environ` (default: the process environment) and CLI `flags` (field → (the
    flag as typed, its value)). Raises ConfigError with one line per problem: the variable or
    flag, the value given, what is allowed; an unknown `REDLINE_*` name with the nearest known one.
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    problems = _unknown_names(environ)
    try:
        # Only REDLINE_* variables count: the same ones pydantic-settings would read.
        values = {name: environ[env_name(name)] for name in Settings.model_fields if env_name(name) in environ}
        values |= {name: value for name, (_, value) in flags.items()}
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        # A union (`stream_processes`: a number or "auto") fails once per member: one line each field.
        by_field: dict[str, list[Mapping[str, Any]]] = {}
        for error in exc.errors():
            by_field.setdefault(str(error["loc"][0]) if error.get("loc") else "", []).append(error)
        problems += [_describe(field, errors, environ, flags) for field, errors in by_field.items()]
        raise ConfigError("\n".join(problems)) from None
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def _unknown_names(environ: Mapping[str, str]) -> list[str]:
    known = [name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name[len(PREFIX) :] not in known and not _SERVICE_LINKS.fullmatch(name):
            # Compared without the shared prefix, which would make every name look close.
            near = difflib.get_close_matches(name[len(PREFIX) :], known, n=1, cutoff=0.7)
            hint = f" (did you mean {PREFIX}{near[0]}?)" if near else ""
            lines.append(f"{name} is not a Redline setting{hint}; docs/configuration.md lists them")
    return lines


def _describe(
    field: str, errors: list[Mapping[str, Any]], environ: Mapping[str, str], flags: Mapping[str, tuple[str, Any]]
) -> str:
    if field in flags:
        source, raw = flags[field][0], flags[field][1]
    else:
        source, raw = env_name(field), environ.get(env_name(field), errors[0].get("input"))
    # Only typed fields can fail, and no secret (keys, passwords) is typed beyond `str`: none is echoed.
    return f"{source}={raw}: " + ", or ".join(dict.fromkeys(_allowed(error) for error in errors))


def _allowed(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "less_than":
        return f"must be less than {context['lt']}"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "greater_than":
        return f"must be more than {context['gt']}"
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false (also 1/0, yes/no, on/off)"
    if kind == "literal_error":
        return f"must be one of {context.get('expected', '')}"
    if kind == "string_too_short":
        return "must not be empty"
    return str(error.get("msg", "invalid"))
