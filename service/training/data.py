"""Labelled JSON lines for training: one object per line with a text and a 0/1 label."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class DataError(ValueError):
    """A training file cannot be used (the message names the file and line)."""


@dataclass(frozen=True)
class Labelled:
    path: Path
    sha256: str
    texts: list[str]
    labels: npt.NDArray[np.int8]
    groups: list[str]  # the value of the group key per row ("" without one)
    dropped: int = 0  # rows left out because their text is in a held-out file

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def read(path: Path, text_key: str, label_key: str, group_key: str | None = None,
         exclude: frozenset[str] = frozenset()) -> Labelled:
    """The rows of `path`; rows whose text is in `exclude` are dropped (and counted)."""
    data = path.read_bytes()
    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []
    dropped = 0
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row[text_key]
            label = row[label_key]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            message = f"{path}:{number}: needs a JSON object with {text_key!r} and {label_key!r} ({exc})"
            raise DataError(message) from exc
        if not isinstance(text, str) or label not in (0, 1, True, False):
            raise DataError(f"{path}:{number}: {text_key!r} must be a string and {label_key!r} 0 or 1")
        if text in exclude:
            dropped += 1
            continue
        texts.append(text)
        labels.append(int(label))
        groups.append(str(row.get(group_key, "")) if group_key else "")
    if not texts:
        raise DataError(f"{path}: no rows")
    return Labelled(path, hashlib.sha256(data).hexdigest(), texts, np.array(labels, dtype=np.int8), groups, dropped)


def texts_of(paths: list[Path], text_key: str) -> frozenset[str]:
    """Every text of the held-out files (what training must not see)."""
    found: set[str] = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                value = json.loads(line).get(text_key)
                if isinstance(value, str):
                    found.add(value)
    return frozenset(found)
