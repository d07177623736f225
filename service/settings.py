"""The one reader of the environment: every knob of the configuration contract, typed.

Variables are `REDLINE_<FIELD>` (DESIGN.md). CLI flags override them by passing values to
`Settings(...)`; nothing deeper in the package reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # --- stream
    kafka_bootstrap: str = ""
    input_topic: str = "chat.events"
    output_topic: str = "chat.verdicts"
    dlq_topic: str = "chat.events.dlq"
    group_id: str = "redline"
    create_topics: bool = True  # create missing topics on start (needs the broker's permission)
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    event_retention_ms: int = 7 * 24 * 3600 * 1000
    # Verdicts are the audit trail: chat-log rules ask for at least six months.
    verdict_retention_ms: int = Field(default=180 * 24 * 3600 * 1000, ge=-1)
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    max_record_bytes: int = Field(default=1024 * 1024, ge=1)  # larger input records are dead-lettered
    # A dead letter keeps the original value up to this size; beyond it the value is omitted and a
    # header gives the original size (the DLQ topic is created to accept this size).
    dead_letter_max_value_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Records per getmany → classify → produce. 5000 measured 15-25% more events/s than 2000 with
    # stream processes (less CPU per event: 9.3 vs 11 µs per process; docs/benchmarks.md).
    batch_max_records: int = Field(default=5000, ge=1)
    max_in_flight_batches: int = Field(default=4, ge=1)  # un-acked batches before the consumer pauses
    poll_timeout_ms: int = Field(default=200, ge=0)
    # Classify in a worker process (its own engine) while this one does the Kafka I/O: auto = on
    # when this process may use >= 2 CPUs (affinity and cgroup quota), docs/stream.md.
    stream_classify_worker: Literal["auto", "on", "off"] = "auto"
    # Stream member processes, each a full consumer in the group (docs/stream.md): 1 = the stream
    # runs in the serving process (with its classify worker); auto = one per CPU this process may
    # use (affinity and cgroup quota), at most topic_partitions, at least 1.
    stream_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    fetch_max_wait_ms: int = Field(default=50, ge=0)  # the broker's wait for data: bounds idle latency
    drain_timeout_seconds: float = Field(default=10.0, gt=0)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    producer_linger_ms: int = Field(default=5, ge=0)
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=1024)
    # none|gzip|snappy|lz4|zstd. zstd: verdict batches measured 1.0 µs per record to build and
    # compress and ~10 bytes per record on the wire; aiokafka's lz4 (level 9) 2.3 µs and ~25 bytes.
    producer_compression: str = "zstd"
    producer_request_timeout_ms: int = Field(default=15_000, ge=1000)
    retry_backoff_max_seconds: float = Field(default=10.0, gt=0)
    broker_probe_interval_seconds: float = Field(default=2.0, gt=0)
    # Counters (`seen` conditions, docs/counters.md): requests keyed by counter key on an internal
    # topic, each key's state in a compacted changelog; the owners form the group `<group_id>.counters`.
    counter_topic: str = ""  # empty: "<group_id>.counters" (one deployment, one set of counters)
    counter_changelog_topic: str = ""  # empty: "<counter topic>.changelog"
    counter_request_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    counter_max_keys: int = Field(default=1_000_000, ge=1)  # per replica; least recently updated evicted
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_check_hostname: bool = True

    # --- http
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    api_keys: str = ""
    admin_keys: str = ""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)  # 413 above; Content-Length and streamed
    max_batch_events: int = Field(default=1000, ge=1)  # POST /check/batch: 422 above
    max_text_chars: int = Field(default=65536, ge=1)  # text, file.name, link.url: 422 above
    # POST /check images (upload part, or base64 `media.image` decoded): 413 above. An upload may
    # carry this plus max_body_bytes; a JSON body stays within max_body_bytes.
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    rules_watch_poll_seconds: float = Field(default=1.0, gt=0)  # pack-directory poll when rules_watch
    # Token bucket per bearer key (per client IP when auth is off); 0 = off. 429 with Retry-After.
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)  # bucket size; 0 = max(1, per_second)
    rate_limit_max_clients: int = Field(default=10_000, ge=1)  # tracked keys/IPs; oldest evicted

    # --- logging
    log_level: str = "INFO"

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
    def stream_enabled(self) -> bool:
        return bool(self.kafka_bootstrap.strip())
