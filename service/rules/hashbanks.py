"""Hash-bank files of a rule pack: parse `<64 hex> <label> [quality]` lines into a `HashBank`.

The loader reads the bytes (so they count in the pack digest and stay confined to the pack);
this module validates every line, drops lines whose PDQ quality is below the bank's minimum
(counted, not errors) and hands numpy arrays to the pure index. Lines are handled in blocks so a
million-line bank never holds a million Python objects at once.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from service.engine.hashbank import HashBank, hashes_from_bytes
from service.errors import PackIssue
from service.rules import schema as s

HASH_BANK_MAX_BYTES: Final = 512 * 1024 * 1024  # ~6M lines; a bank is bigger than a lexicon
MAX_ISSUES_PER_FILE: Final = 20  # past this, one summary line: a wrong file is wrong everywhere
_BLOCK_BYTES: Final = 1 << 22

Locate = Callable[[str, str], PackIssue]
ReadBank = Callable[[str, PackIssue], bytes | None]  # (relative path, where declared) → bytes


@dataclass(frozen=True)
class BankStats:
    name: str
    file: str
    hashes: int
    ignored_low_quality: int
    max_distance: int


def load_hash_banks(
    pack: s.PackFile, read: ReadBank, locate: Locate, issues: list[PackIssue]
) -> tuple[dict[str, HashBank], list[BankStats]]:
    """Every bank the pack declares, in name order; problems go to `issues` with file:line."""
    banks: dict[str, HashBank] = {}
    stats: list[BankStats] = []
    files: dict[str, bytes | None] = {}  # banks may share a file (e.g. with another distance)
    for name, spec in sorted(pack.hash_banks.items()):
        first_use = spec.file not in files
        if first_use:
            files[spec.file] = read(spec.file, locate(f"$.hash_banks.{name}.file", ""))
        data = files[spec.file]
        if data is None:
            continue
        min_quality = spec.min_quality if spec.min_quality is not None else pack.hash_min_quality
        parsed = parse_bank(data, spec.file, min_quality, issues if first_use else [])
        if parsed is None:
            continue
        raw, blob, starts, ignored = parsed
        bank = HashBank.from_packed(name, hashes_from_bytes(raw), blob, starts, spec.max_distance)
        banks[name] = bank
        stats.append(BankStats(name, spec.file, len(bank), ignored, spec.max_distance))
    return banks, stats


def parse_bank(
    data: bytes, relative: str, min_quality: int, issues: list[PackIssue]
) -> tuple[bytes, bytes, npt.NDArray[np.int64], int] | None:
    """(hashes as 32-byte records, label blob, label starts, lines ignored for quality), or None."""
    found: list[PackIssue] = []
    hashes: list[bytes] = []
    labels: list[bytes] = []
    ignored = 0
    for first_line, lines in _blocks(data):
        block_hex: list[bytes] = []
        for number, line in enumerate(lines, start=first_line):
            parts = line.split()
            if not parts or parts[0].startswith(b"#"):
                continue
            if len(parts) not in (2, 3):
                found.append(PackIssue(relative, number, "expected `<64 hex digits> <label> [quality 0-100]`"))
                continue
            if len(parts[0]) != 64:
                found.append(PackIssue(relative, number, f"hash must be 64 hex digits, got {len(parts[0])}"))
                continue
            if len(parts) == 3:
                quality = _quality(parts[2])
                if quality is None:
                    message = f"quality must be an integer 0-100, got {_show(parts[2])}"
                    found.append(PackIssue(relative, number, message))
                    continue
                if quality < min_quality:
                    ignored += 1
                    continue
            block_hex.append(parts[0])
            labels.append(parts[1])
        try:
            hashes.append(binascii.a2b_hex(b"".join(block_hex)))
        except binascii.Error:
            found.extend(_locate_bad_hex(lines, first_line, relative))
    try:
        blob = b"".join(labels)
        blob.decode("utf-8")
    except UnicodeDecodeError:
        found.append(PackIssue(relative, 0, "labels must be UTF-8"))
    if found:
        issues.extend(found[:MAX_ISSUES_PER_FILE])
        if len(found) > MAX_ISSUES_PER_FILE:
            issues.append(PackIssue(relative, 0, f"{len(found) - MAX_ISSUES_PER_FILE} more errors not shown"))
        return None
    starts = np.zeros(len(labels) + 1, dtype=np.int64)
    if labels:
        np.cumsum(np.fromiter(map(len, labels), dtype=np.int64, count=len(labels)), out=starts[1:])
    return b"".join(hashes), blob, starts, ignored


def _blocks(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """Lines in blocks of about 4 MiB, each with the 1-based number of its first line."""
    position, line = 0, 1
    while position < len(data):
        cut = data.find(b"\n", position + _BLOCK_BYTES)
        end = len(data) if cut < 0 else cut + 1
        lines = data[position:end].splitlines()
        yield line, lines
        line += len(lines)
        position = end


def _quality(field: bytes) -> int | None:
    if not field.isdigit() or len(field) > 3:
        return None
    value = int(field)
    return value if value <= 100 else None


def _locate_bad_hex(lines: list[bytes], first_line: int, relative: str) -> Iterator[PackIssue]:
    for number, line in enumerate(lines, start=first_line):
        parts = line.split()
        if len(parts) in (2, 3) and len(parts[0]) == 64 and not parts[0].startswith(b"#"):
            try:
                binascii.a2b_hex(parts[0])
            except binascii.Error:
                yield PackIssue(relative, number, f"hash is not hexadecimal: {_show(parts[0])}")


def _show(field: bytes) -> str:
    return repr(field[:70].decode("utf-8", "replace"))
