"""Windowed counter state of one owner: per state key, the distinct members seen and when.

Pure and bounded (no I/O, no clock: time is the events' own):
* a key keeps at most `at_least` members — the newest ones. A count only has to tell whether it
  reached the threshold, and if at least N distinct members fall inside the window, the N newest
  do; so the memory of a key is bounded by its threshold, not by the traffic;
* members older than the key's newest sighting minus its window are dropped as sightings arrive;
* the number of keys is capped: past `max_keys`, the least recently updated key is evicted (and
  counted, so operators see the cap bite); keys whose window passed the newest event time seen
  are expired by `expire()`.
Re-applying a sighting (a redelivered request after a crash) changes nothing: a member is a set
element, its time the latest seen, so at-least-once delivery never double counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from service.engine.counting import Sighting


class KeyState(msgspec.Struct, array_like=True, gc=False):
    """What the changelog stores per key: window length, threshold, member → newest time."""

    within: float
    cap: int
    members: dict[str, float]

    @property
    def newest(self) -> float:
        return max(self.members.values(), default=0.0)


_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(KeyState).decode


def encode_state(state: KeyState) -> bytes:
    return _encode(state)


def decode_state(data: bytes) -> KeyState:
    return _decode_state(data)


@dataclass
class Applied:
    count: int  # members inside the window at the sighting's time, this one included (≤ at_least)
    evicted_keys: list[str] = field(default_factory=list)  # cap hits: the keys dropped to make room


@dataclass
class WindowStore:
    max_keys: int
    # Insertion order is update order: the first key is the least recently updated.
    _keys: dict[str, KeyState] = field(default_factory=dict)
    stream_time: float = 0.0  # the newest event time applied: what `expire` measures against

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str) -> KeyState | None:
        return self._keys.get(key)

    def items(self) -> Iterator[tuple[str, KeyState]]:
        return iter(self._keys.items())

    def apply(self, key: str, sighting: Sighting) -> Applied:
        state = self._keys.pop(key, None)
        if state is None:
            state = KeyState(sighting.within_seconds, sighting.at_least, {})
        else:  # a reload may have changed the threshold or window: the newest sighting's rule wins
            state.within = sighting.within_seconds
            state.cap = max(1, sighting.at_least)
        members = state.members
        known = members.get(sighting.member)
        if known is None or sighting.at > known:
            members[sighting.member] = sighting.at
        newest = max(sighting.at, state.newest)
        horizon = newest - state.within
        if any(t <= horizon for t in members.values()):
            state.members = members = {m: t for m, t in members.items() if t > horizon}
        if len(members) > state.cap:  # keep the newest `cap`: enough to tell the threshold
            kept = sorted(members.items(), key=lambda item: item[1], reverse=True)[: state.cap]
            state.members = members = dict(kept)
        self._keys[key] = state
        self.stream_time = max(self.stream_time, sighting.at)
        count = sum(1 for t in members.values() if t > sighting.at - state.within)
        return Applied(count, self.trim())

    def trim(self) -> list[str]:
        """Evict the least recently updated keys beyond `max_keys`; returns them."""
        evicted: list[str] = []
        while len(self._keys) > self.max_keys:
            oldest = next(iter(self._keys))
            del self._keys[oldest]
            evicted.append(oldest)
        return evicted

    def restore(self, key: str, state: KeyState | None) -> None:
        """A changelog record: the key's state, or None (a tombstone) for a key that is gone."""
        self._keys.pop(key, None)
        if state is not None and state.members:
            self._keys[key] = state
            self.stream_time = max(self.stream_time, state.newest)

    def drop(self, keys: set[str] | None = None) -> None:
        """Forget keys (those of revoked partitions); None forgets all."""
        if keys is None:
            self._keys.clear()
            return
        for key in keys:
            self._keys.pop(key, None)

    def expire(self, limit: int = 10_000) -> list[str]:
        """Drop up to `limit` keys, least recently updated first, whose window has passed."""
        expired: list[str] = []
        for key, state in self._keys.items():
            if len(expired) >= limit or state.newest > self.stream_time - state.within:
                break  # update order ≈ time order: the rest were updated later
            expired.append(key)
        for key in expired:
            del self._keys[key]
        return expired
