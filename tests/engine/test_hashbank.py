"""The perceptual-hash index: exact distance thresholds, every search path, brute-force agreement."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from service.engine import hashbank as hb
from service.engine.hashbank import HashBank, hamming, hashes_from_hex

Words = npt.NDArray[np.uint64]


def random_words(rng: np.random.Generator, n: int) -> Words:
    return rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)


def flipped(word: Words, bits: int, rng: np.random.Generator) -> Words:
    """`word` (one row of 4 uint64) with exactly `bits` distinct bits flipped."""
    out = word.copy().reshape(1, 4)
    as_bytes = out.view(np.uint8).reshape(-1)
    for bit in rng.choice(256, size=bits, replace=False):
        as_bytes[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def build(words: Words, max_distance: int = 31) -> HashBank:
    return HashBank.build("test", words, [f"h{i}" for i in range(len(words))], max_distance)


@pytest.mark.parametrize(
    ("max_distance", "distance", "found"),
    [
        (31, 31, True),  # PDQ's threshold is inclusive
        (31, 32, False),  # one bit past it
        (31, 0, True),  # the identical hash
        (10, 10, True),  # a custom, stricter bank
        (10, 11, False),
        (0, 0, True),  # exact-match bank: only the exact chunk values are probed
        (0, 1, False),
        (15, 15, True),  # radius 0: largest distance with exact chunk probes only
        (16, 16, True),  # radius 1 starts here
        (47, 47, True),  # radius 2: 137 probes per chunk
        (47, 48, False),
        (48, 48, True),  # radius 3: the linear-scan path
        (48, 49, False),
        (64, 64, True),
    ],
)
def test_distance_threshold_is_exact(max_distance: int, distance: int, found: bool) -> None:
    rng = np.random.default_rng(distance * 100 + max_distance)
    words = random_words(rng, 2000)
    query = flipped(words[777], distance, rng)
    assert int(hamming(words[777:778], query)[0]) == distance
    matches = build(words, max_distance).search(query)
    if found:
        assert [(m.frame, m.index, m.distance, m.label) for m in matches] == [(0, 777, distance, "h777")]
    else:
        assert matches == []


def test_empty_bank_matches_nothing() -> None:
    bank = build(np.zeros((0, 4), dtype=np.uint64))
    assert len(bank) == 0
    assert bank.search(hashes_from_hex(["0" * 64, "f" * 64])) == []
    assert build(random_words(np.random.default_rng(0), 10)).search(np.zeros((0, 4), dtype=np.uint64)) == []


def test_each_frame_reports_its_nearest_hash() -> None:
    rng = np.random.default_rng(7)
    words = random_words(rng, 5000)
    frames = np.concatenate([
        random_words(rng, 1),  # frame 0: unrelated
        flipped(words[10], 25, rng),  # frame 1
        flipped(words[20], 3, rng),  # frame 2
        random_words(rng, 1),  # frame 3: unrelated
    ])
    found = build(words).search(frames)
    assert [(m.frame, m.index, m.distance) for m in found] == [(1, 10, 25), (2, 20, 3)]


def test_duplicate_hashes_report_the_lowest_index() -> None:
    rng = np.random.default_rng(3)
    words = random_words(rng, 100)
    words[60] = words[5]
    assert [m.index for m in build(words).search(words[5:6])] == [5]


@pytest.mark.parametrize("max_distance", [31, 40, 52])
def test_many_hashes_agree_with_brute_force(max_distance: int) -> None:
    rng = np.random.default_rng(max_distance)
    words = random_words(rng, 50_000)
    bank = build(words, max_distance)
    queries = np.concatenate(
        [flipped(words[int(rng.integers(len(words)))], int(rng.integers(0, 60)), rng) for _ in range(150)]
        + [random_words(rng, 50)]
    )
    expected = []
    for frame, query in enumerate(queries):
        distances = hamming(words, query[None, :])
        best = int(np.argmin(distances))
        if distances[best] <= max_distance:
            expected.append((frame, best, int(distances[best])))
    assert len(expected) > 50  # the sample really exercises matches and misses
    assert [(m.frame, m.index, m.distance) for m in bank.search(queries)] == expected


def test_byte_table_popcount_equals_bitwise_count() -> None:
    """numpy < 2 has no bitwise_count; its fallback must count the same."""
    x = random_words(np.random.default_rng(5), 300)
    via_table = hb._byte_popcount(x)
    assert via_table.shape == (300, 4)
    assert np.array_equal(via_table.sum(axis=1), np.bitwise_count(x).sum(axis=1))


def test_labels_are_utf8_and_validation_is_strict() -> None:
    words = random_words(np.random.default_rng(1), 2)
    bank = HashBank.build("b", words, ["淫秽-示例", "x"], 31)
    assert bank.label(0) == "淫秽-示例"
    assert bank.search(words[:1])[0].label == "淫秽-示例"
    with pytest.raises(ValueError, match="labels"):
        HashBank.build("b", words, ["only one"], 31)
    with pytest.raises(ValueError, match="64 hex"):
        hashes_from_hex(["abcd"])  # hex, but not 32 bytes
    with pytest.raises(ValueError, match="non-hexadecimal"):
        hashes_from_hex(["zz" * 32])


def test_pdqhash_of_similar_images_is_within_31_and_unrelated_is_not() -> None:
    """Real PDQ hashes (PyPI pdqhash) of generated images: a brightened copy stays within PDQ's
    recommended distance, an unrelated image does not."""
    pdqhash = pytest.importorskip("pdqhash")
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:256, 0:256]
    base = np.stack([(xx + yy) % 256, (xx * 2) % 256, (yy * 3) % 256], axis=-1).astype(np.float64)
    base += rng.normal(0, 8, base.shape)
    image = np.clip(base, 0, 255).astype(np.uint8)
    brighter = np.clip(image.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    unrelated = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)

    def pdq_hex(img: npt.NDArray[np.uint8]) -> tuple[str, int]:
        bits, quality = pdqhash.compute(img)
        value = int("".join("1" if b else "0" for b in bits), 2)
        return f"{value:064x}", int(quality)

    (h_image, quality), (h_brighter, _), (h_unrelated, _) = map(pdq_hex, (image, brighter, unrelated))
    assert quality >= 50  # a hash PDQ would trust
    bank = HashBank.build("pdq", hashes_from_hex([h_image]), ["generated"], 31)
    near = bank.search(hashes_from_hex([h_brighter]))
    assert len(near) == 1
    assert near[0].distance <= 31
    assert bank.search(hashes_from_hex([h_unrelated])) == []


def test_index_module_is_pure() -> None:
    """The index is part of the pure engine: the loader reads files, the index only gets arrays."""
    import inspect

    source = inspect.getsource(hb)
    for call in ("open(", "datetime.now(", "time.", "os.environ", "import logging", "Path("):
        assert call not in source, call


def test_small_bank_python_path_agrees_with_the_numpy_index() -> None:
    # banks up to SMALL_BANK hashes are searched with Python ints; both paths must agree
    import random

    from service.engine.hashbank import SMALL_BANK, HashBank, hashes_from_hex

    rng = random.Random(5)
    bank_hex = [f"{rng.getrandbits(256):064x}" for _ in range(SMALL_BANK)]
    bank = HashBank.build("small", hashes_from_hex(bank_hex), [f"l{i}" for i in range(SMALL_BANK)], 31)
    queries = []
    for i in range(0, SMALL_BANK, 8):
        value = int(bank_hex[i], 16)
        for bit in rng.sample(range(256), rng.choice((0, 15, 31, 32, 60))):
            value ^= 1 << bit
        queries.append(f"{value:064x}")
    assert bank._small is not None
    assert bank.search_hex(queries) == bank.search(hashes_from_hex(queries))
    assert bank.search_hex(queries)  # some frames are near
