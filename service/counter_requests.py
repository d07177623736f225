"""Counter requests: the records of the internal counter topic (msgpack, keyed by state key).

An event with sightings travels key to key: the stream's first pass (service/stream) sends it to
the owner of its first sighting's key; each owner (service/counters) counts its key, adds the count
and passes the request on to the next key's owner; the last one classifies the event with every
count and publishes the verdict. The event travels as the original record value, so the verdict is
computed from exactly what the chat backend sent. Both packages write these records: the format
lives here, in neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from service.engine.counting import Sighting


class Hop(msgspec.Struct, array_like=True, gc=False):
    state_key: str
    member: str
    at: float
    at_least: int
    within: float

    def sighting(self) -> Sighting:
        return Sighting(self.state_key, self.member, self.at, self.at_least, self.within)


class CounterRequest(msgspec.Struct, array_like=True, gc=False):
    event: bytes  # the input record's value, unchanged
    hops: list[Hop]  # still to count, the next one first (its key is this record's key)
    counts: dict[str, int]  # counted so far, by state key
    source: str  # "topic/partition/offset" of the input record: for dead letters and logs
    sent_at: float  # epoch seconds of the event: for the end-to-end lag histogram


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(CounterRequest).decode


def new_request(event: bytes, sightings: Sequence[Sighting], source: str, sent_at: float) -> CounterRequest:
    hops = [Hop(s.state_key, s.member, s.at, s.at_least, s.within_seconds) for s in sightings]
    return CounterRequest(event, hops, {}, source, sent_at)


def encode_request(request: CounterRequest) -> bytes:
    return _encode(request)


def decode_request(data: bytes) -> CounterRequest:
    """Raises msgspec.DecodeError (or ValidationError) for a record that is not a request."""
    return _decode(data)
