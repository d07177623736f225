"""What a rule pack may cost to load: bytes read, patterns compiled, compile time and memory.

The loader enforces the first two itself, before the expensive work they predict (a lexicon's
terms are counted before any is expanded); the last two are enforced by compiling the pack in a
child process that is killed when it overruns (service/rules/isolated.py). A pack over any budget
is refused like any invalid pack: every other problem listed with it, the old pack still serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.settings import Settings


@dataclass(frozen=True, slots=True)
class PackBudget:
    max_bytes: int  # every file of the pack together (hash banks included)
    max_patterns: int  # compiled patterns (keywords, regexes and their variants) in all fields
    compile_timeout_seconds: float
    max_memory_bytes: int  # resident memory of the compiling child

    @classmethod
    def from_settings(cls, settings: Settings) -> PackBudget:
        return cls(
            settings.pack_max_bytes,
            settings.pack_max_patterns,
            settings.pack_compile_timeout_seconds,
            settings.pack_compile_max_memory_bytes,
        )


def default_budget() -> PackBudget:
    """The settings' defaults: what `rules lint|test`, `check` and `replay` load packs under."""
    return PackBudget.from_settings(Settings.model_validate({}))
