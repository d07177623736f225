"""The one reader of the environment: every knob of the configuration contract, typed.

Variables are `REDLINE_<FIELD>` (DESIGN.md). CLI flags override them by passing values to
`Settings(...)`; nothing deeper in the package reads `os.environ`.
"""

from __future__ import annotations

from pathlib import Path

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

    # --- http
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    api_keys: str = ""
    admin_keys: str = ""

    # --- logging
    log_level: str = "INFO"

    @property
    def api_key_set(self) -> tuple[str, ...]:
        return _split_keys(self.api_keys)

    @property
    def admin_key_set(self) -> tuple[str, ...]:
        return _split_keys(self.admin_keys)

    @property
    def stream_enabled(self) -> bool:
        return bool(self.kafka_bootstrap.strip())
