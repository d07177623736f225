"""The exception tree. Every error Redline raises on purpose derives from `RedlineError`.

    RedlineError
    ├── EventDecodeError      an event is not valid JSON or not a ChatEvent (reason in the message)
    ├── PackError             a rule pack was refused; `.issues` lists every problem found
    └── ConfigError           settings that cannot work together
"""

from __future__ import annotations

from dataclasses import dataclass


class RedlineError(Exception):
    """Root of Redline's own errors."""


class EventDecodeError(RedlineError):
    """An event could not be decoded; the message says where and why."""


class ConfigError(RedlineError):
    """The configuration is inconsistent."""


@dataclass(frozen=True, order=True)
class PackIssue:
    """One problem in a rule pack, located by file (relative to the pack) and 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class PackError(RedlineError):
    """A rule pack was refused. Nothing of it was loaded."""

    def __init__(self, pack: str, issues: list[PackIssue]) -> None:
        self.pack = pack
        self.issues = sorted(issues)
        listing = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"rule pack {pack!r} refused with {len(self.issues)} error(s):\n{listing}")

    def __reduce__(self) -> tuple[type[PackError], tuple[str, list[PackIssue]]]:
        # Pickled by the child process that compiles a pack (service/rules/isolated.py).
        return (PackError, (self.pack, self.issues))
