"""The windowed counter state: distinct members, windows, per-key and key-count bounds, idempotence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.counters.window import WindowStore, decode_state, encode_state
from service.engine.counting import Sighting

HOUR = 3600.0


def sight(member: str, at: float, *, key: str = "k", at_least: int = 3, within: float = HOUR) -> Sighting:
    return Sighting(key, member, at, at_least, within)


def test_counts_distinct_members_within_the_window() -> None:
    store = WindowStore(max_keys=10)
    assert store.apply("k", sight("chat-a", 0)).count == 1
    assert store.apply("k", sight("chat-a", 10)).count == 1  # the same chat again: still one
    assert store.apply("k", sight("chat-b", 20)).count == 2
    assert store.apply("k", sight("chat-c", 30)).count == 3
    # An hour after chat-a's last sighting it has left the window; b and c are still in it.
    assert store.apply("k", sight("chat-d", 10 + HOUR)).count == 3
    assert store.apply("k", sight("chat-e", 31 + HOUR)).count == 2  # b and c left: d and e


def test_a_key_keeps_at_most_threshold_members_and_still_tells_the_threshold() -> None:
    store = WindowStore(max_keys=10)
    counts = [store.apply("k", sight(f"chat-{i}", i, at_least=5)).count for i in range(100)]
    assert counts[:5] == [1, 2, 3, 4, 5]
    assert set(counts[4:]) == {5}  # saturates at the threshold: enough to decide, bounded memory
    state = store.get("k")
    assert state is not None
    assert len(state.members) == 5
    assert set(state.members) == {f"chat-{i}" for i in range(95, 100)}  # the newest are kept


def test_reapplying_a_sighting_changes_nothing() -> None:
    store = WindowStore(max_keys=10)
    for member, at in (("a", 1.0), ("b", 2.0)):
        store.apply("k", sight(member, at))
    before = encode_state(store.get("k"))  # type: ignore[arg-type]
    assert store.apply("k", sight("b", 2.0)).count == 2  # a redelivered request
    assert encode_state(store.get("k")) == before  # type: ignore[arg-type]


def test_the_key_cap_evicts_the_least_recently_updated_key() -> None:
    store = WindowStore(max_keys=3)
    for key in ("k1", "k2", "k3"):
        assert store.apply(key, sight("a", 1, key=key)).evicted_keys == []
    store.apply("k1", sight("b", 2, key="k1"))  # k1 is now the most recently updated
    assert store.apply("k4", sight("a", 3, key="k4")).evicted_keys == ["k2"]
    assert len(store) == 3
    assert store.get("k1") is not None


def test_expire_drops_keys_whose_window_passed_the_stream_time() -> None:
    store = WindowStore(max_keys=100)
    store.apply("short", sight("a", 0, key="short", within=60))
    store.apply("long", sight("a", 10, key="long", within=HOUR))
    store.apply("fresh", sight("a", 120, key="fresh", within=60))  # stream time is now 120
    assert store.expire() == ["short"]
    assert store.get("long") is not None


def test_state_round_trips_and_a_tombstone_restores_a_deletion() -> None:
    store = WindowStore(max_keys=10)
    store.apply("k", sight("a", 5))
    state = store.get("k")
    assert state is not None
    copy = WindowStore(max_keys=10)
    copy.restore("k", decode_state(encode_state(state)))
    assert copy.apply("k", sight("b", 6)).count == 2
    copy.restore("k", None)
    assert copy.get("k") is None


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.floats(0, 10 * HOUR)), max_size=60),
       st.integers(1, 6))
def test_count_equals_distinct_members_in_window_capped_at_threshold(
    sightings: list[tuple[str, float]], at_least: int
) -> None:
    """Against a brute-force model, for sightings in time order (what one key's owner sees)."""
    store = WindowStore(max_keys=10)
    seen: dict[str, float] = {}
    for member, at in sorted(sightings, key=lambda s: s[1]):
        seen[member] = max(at, seen.get(member, at))
        expected = sum(1 for t in seen.values() if t > at - HOUR)
        assert store.apply("k", sight(member, at, at_least=at_least)).count == min(expected, at_least)
