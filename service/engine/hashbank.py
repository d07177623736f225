"""A perceptual-hash bank: PDQ hashes (256 bits) searched within a Hamming distance.

Multi-index hashing. The 256 bits are cut into 16 chunks of 16 bits. If two hashes differ in at
most `d` bits, by pigeonhole some chunk differs in at most `r = d // 16` bits (16 chunks each
differing in r + 1 bits or more would make ≥ 16·(r + 1) > d). So probing every chunk at its exact
value and at each value within `r` bits of it reaches every hash within `d`; the candidates are
then verified with XOR + popcount. For PDQ's recommended d = 31, r = 1: 16 × 17 probes.

Each chunk's table is laid out like a CSR matrix: hash indices sorted by that chunk's value (one
stable radix argsort per chunk) and an offsets array over all 65,536 values, so a probe is two
array reads and the candidates of all probes are gathered in a few vectorised numpy calls, for
every frame of a video at once. Measured against per-chunk `searchsorted` over sorted values the
offsets table needs no binary search and the same memory (see docs/benchmarks.md, "Hash banks").

Beyond r = 2 (d ≥ 48) the probe count (697 per chunk at r = 3) approaches a scan of the bank,
so the index falls back to a linear XOR + popcount scan.

Pure: built from arrays the loader parsed; no I/O, no clock.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

HASH_BITS: Final = 256
WORDS: Final = HASH_BITS // 64  # a hash is four uint64 words
CHUNKS: Final = 16
CHUNK_BITS: Final = HASH_BITS // CHUNKS
CHUNK_VALUES: Final = 1 << CHUNK_BITS
MAX_PROBE_RADIUS: Final = 2  # beyond this a linear scan costs less than the probes
PDQ_DEFAULT_DISTANCE: Final = 31  # PDQ's recommended match threshold

Words = npt.NDArray[np.uint64]
Indices = npt.NDArray[np.int64]

_BYTE_POPCOUNT: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
_HAS_BITWISE_COUNT: Final = hasattr(np, "bitwise_count")
SMALL_BANK: Final = 256  # up to this many hashes, a Python scan is faster than the numpy index


@dataclass(frozen=True, slots=True)
class HashMatch:
    """The closest bank hash to one query hash (`frame` is the query's position)."""

    frame: int
    index: int
    distance: int
    label: str


def hashes_from_hex(hexes: Sequence[str]) -> Words:
    """64-hex-character hashes as an (n, 4) uint64 array (raises ValueError on bad hex)."""
    if not hexes:
        return np.zeros((0, WORDS), dtype=np.uint64)
    raw = bytes.fromhex("".join(hexes))
    if len(raw) != len(hexes) * HASH_BITS // 8:
        raise ValueError("every hash must be 64 hex characters")
    return np.frombuffer(raw, dtype=np.uint64).reshape(-1, WORDS)


def hashes_from_bytes(raw: bytes) -> Words:
    """Concatenated 32-byte hashes as an (n, 4) uint64 array (shares `raw`'s memory)."""
    if len(raw) % (HASH_BITS // 8):
        raise ValueError("length is not a multiple of 32 bytes")
    return np.frombuffer(raw, dtype=np.uint64).reshape(-1, WORDS)


def hamming(a: Words, b: Words) -> npt.NDArray[np.uint16]:
    """Row-wise Hamming distances of two broadcastable (n, 4) uint64 arrays."""
    return _popcount_rows(np.bitwise_xor(a, b))


def _popcount_rows(x: Words) -> npt.NDArray[np.uint16]:
    # Adding the four columns is ~10x faster than `.sum(axis=-1)` over an axis of length 4.
    counts = np.bitwise_count(x) if _HAS_BITWISE_COUNT else _byte_popcount(x)
    total = np.add(counts[:, 0], counts[:, 1], dtype=np.uint16)
    total += counts[:, 2]
    total += counts[:, 3]
    return total


def _byte_popcount(x: Words) -> npt.NDArray[np.uint16]:
    """numpy < 2 has no bitwise_count: a byte table, summed per 64-bit word."""
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(len(x), WORDS, 8)
    counts: npt.NDArray[np.uint16] = _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.uint16)
    return counts


def _probe_masks(radius: int) -> npt.NDArray[np.int64]:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in itertools.combinations(range(CHUNK_BITS), r):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class HashBank:  # not slotted: `_small` is a cached property
    """An immutable index over `words` (n × 4 uint64) with one UTF-8 label per hash."""

    name: str
    max_distance: int
    words: Words
    label_blob: bytes  # labels concatenated; label i is label_blob[label_starts[i]:label_starts[i+1]]
    label_starts: Indices
    # Multi-index tables (empty when the bank scans linearly):
    offsets: Indices  # CHUNKS * CHUNK_VALUES + 1 positions into `members`
    members: npt.NDArray[np.int32]  # CHUNKS blocks of n hash indices, each sorted by its chunk value
    masks: npt.NDArray[np.int64]  # probe offsets (XOR masks) for one chunk
    chunk_base: Indices  # chunk j's values start at j * CHUNK_VALUES in `offsets`

    @classmethod
    def build(cls, name: str, words: Words, labels: Sequence[str] | Sequence[bytes], max_distance: int) -> HashBank:
        """Index `words` (n × 4 uint64) with one label per hash."""
        blob, starts = pack_labels(labels)
        return cls.from_packed(name, words, blob, starts, max_distance)

    @classmethod
    def from_packed(cls, name: str, words: Words, blob: bytes, starts: Indices, max_distance: int) -> HashBank:
        """Index `words`; label i is blob[starts[i]:starts[i + 1]] (see `pack_labels`)."""
        if words.ndim != 2 or words.shape[1] != WORDS or words.dtype != np.uint64:
            raise ValueError("words must be an (n, 4) uint64 array")
        if not 0 <= max_distance <= HASH_BITS:
            raise ValueError(f"max_distance {max_distance} outside 0..{HASH_BITS}")
        if len(starts) != len(words) + 1:
            raise ValueError(f"{len(starts) - 1} labels for {len(words)} hashes")
        words = np.ascontiguousarray(words)
        radius = max_distance // CHUNKS
        chunk_base = np.arange(CHUNKS, dtype=np.int64) * CHUNK_VALUES
        if radius > MAX_PROBE_RADIUS or len(words) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(name, max_distance, words, blob, starts, empty, np.zeros(0, np.int32), empty, chunk_base)
        n = len(words)
        chunks = words.view(np.uint16)  # (n, 16); any fixed bit layout works if queries use the same
        offsets = np.empty(CHUNKS * CHUNK_VALUES + 1, dtype=np.int64)
        members = np.empty(CHUNKS * n, dtype=np.int32)
        for j in range(CHUNKS):
            values = chunks[:, j]
            members[j * n : (j + 1) * n] = np.argsort(values, kind="stable")  # radix sort for uint16
            counts = np.bincount(values, minlength=CHUNK_VALUES)
            offsets[j * CHUNK_VALUES : (j + 1) * CHUNK_VALUES] = j * n + np.cumsum(counts) - counts
        offsets[-1] = CHUNKS * n
        return cls(name, max_distance, words, blob, starts, offsets, members, _probe_masks(radius), chunk_base)

    def __len__(self) -> int:
        return len(self.words)

    def label(self, index: int) -> str:
        return self.label_blob[self.label_starts[index] : self.label_starts[index + 1]].decode("utf-8")

    @functools.cached_property
    def _small(self) -> tuple[int, ...] | None:
        """Small banks as 256-bit ints: XOR + int.bit_count beats numpy's per-call overhead."""
        if len(self.words) > SMALL_BANK:
            return None
        return tuple(int.from_bytes(row.tobytes(), "little") for row in self.words)

    def search_hex(self, hexes: Sequence[str]) -> list[HashMatch]:
        """`search` for hex hashes (ValueError on bad hex); small banks skip numpy entirely."""
        small = self._small
        if small is None:
            return self.search(hashes_from_hex(hexes))
        found: list[HashMatch] = []
        for frame, text in enumerate(hexes):
            query = int.from_bytes(bytes.fromhex(text), "little")
            best, best_index = HASH_BITS + 1, -1
            for index, value in enumerate(small):
                distance = (value ^ query).bit_count()
                if distance < best:
                    best, best_index = distance, index
            if best <= self.max_distance:
                found.append(HashMatch(frame, best_index, best, self.label(best_index)))
        return found

    def search(self, queries: Words) -> list[HashMatch]:
        """For each query row within `max_distance` of some bank hash, its closest one (by frame)."""
        if len(self.words) == 0 or len(queries) == 0:
            return []
        if len(self.masks) == 0:
            return self._scan(queries)
        frames, candidates = self._candidates(queries)
        if len(candidates) == 0:
            return []
        # np.take is several times faster than fancy indexing for gathering rows.
        distances = hamming(np.take(self.words, candidates, axis=0), np.take(queries, frames, axis=0))
        hit = distances <= self.max_distance
        if not hit.any():
            return []
        return self._best(frames[hit], candidates[hit], distances[hit])

    def _candidates(self, queries: Words) -> tuple[Indices, Indices]:
        """(frame, bank index) pairs sharing a chunk within the probe radius; duplicates allowed."""
        values = queries.view(np.uint16).astype(np.int64)  # (f, 16)
        probes = ((values[:, :, None] ^ self.masks[None, None, :]) + self.chunk_base[None, :, None]).ravel()
        lo = self.offsets[probes]
        lengths = self.offsets[probes + 1] - lo
        total = int(lengths.sum())
        if total == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        # Concatenate the ranges [lo, lo + length) without a Python loop.
        run_starts = np.cumsum(lengths) - lengths
        positions = np.repeat(lo - run_starts, lengths) + np.arange(total, dtype=np.int64)
        per_frame = probes.size // len(queries)
        frames = np.repeat(np.arange(probes.size, dtype=np.int64) // per_frame, lengths)
        return frames, np.take(self.members, positions).astype(np.int64)

    def _scan(self, queries: Words) -> list[HashMatch]:
        found: list[HashMatch] = []
        for frame, query in enumerate(queries):
            distances = hamming(self.words, query[None, :])  # d ≥ 48: a scan beats the probes
            best = int(np.argmin(distances))
            if distances[best] <= self.max_distance:
                found.append(HashMatch(frame, best, int(distances[best]), self.label(best)))
        return found

    def _best(self, frames: Indices, candidates: Indices, distances: npt.NDArray[np.uint16]) -> list[HashMatch]:
        order = np.lexsort((candidates, distances, frames))  # per frame: nearest, then lowest index
        found: list[HashMatch] = []
        last = -1
        for i in order:
            frame = int(frames[i])
            if frame != last:
                last = frame
                index = int(candidates[i])
                found.append(HashMatch(frame, index, int(distances[i]), self.label(index)))
        return found


def pack_labels(labels: Sequence[str] | Sequence[bytes]) -> tuple[bytes, Indices]:
    """Labels as one UTF-8 blob plus start offsets: ~1 byte per character instead of a str object each."""
    encoded = [x.encode("utf-8") if isinstance(x, str) else x for x in labels]
    starts = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=starts[1:])
    return b"".join(encoded), starts
