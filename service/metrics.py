"""Every Prometheus object Redline exports, defined once (names `redline_*`, base units, `_total`).

Label values are bounded: `source` is stream|http, `action` the three actions, `rule`/`category`
come from the loaded pack (pre-initialised when a pack is installed), `reason` a fixed set.
Hot paths aggregate per batch and increment once per label set (`record_counts`).
"""

from __future__ import annotations

import functools
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Gauge, Histogram, Info

from service.bulk_histogram import BulkHistogram, HistogramChild
from service.events import ACTIONS
from service.verdict_counts import VerdictCounts

if TYPE_CHECKING:
    from service.kafka.dead_letters import DeadLetter

SOURCES: Final = ("stream", "http")
DEAD_LETTER_REASONS: Final = (
    "invalid_json", "invalid_event", "too_large", "classify_error", "invalid_counter_request"
)

# Sub-millisecond resolution: the engine answers in microseconds.
_CLASSIFY_BUCKETS: Final = (
    5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5,
)
_LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

events_consumed_total = Counter("redline_events_consumed_total", "Records read from the input topic.")
events_unknown_fields_total = Counter(
    "redline_events_unknown_fields_total",
    "Input events accepted with fields the ChatEvent contract does not know (ignored: a newer chat backend?).",
)
events_classified_total = Counter(
    "redline_events_classified_total", "Events classified by the engine.", ["source"]
)
events_dead_lettered_total = Counter(
    "redline_events_dead_lettered_total", "Records sent to the dead-letter topic.", ["reason"]
)
verdicts_total = Counter("redline_verdicts_total", "Verdicts produced, by action.", ["source", "action"])
category_matches_total = Counter(
    "redline_category_matches_total",
    "Rule matches by category (shadow=true: reported only, never acted on).",
    ["category", "shadow"],
)
rule_matches_total = Counter(
    "redline_rule_matches_total", "Matches per rule of the loaded pack.", ["rule", "category", "shadow"]
)
# Observed per batch (one share or one lag per event): histograms that take a batch at once.
classify_duration_seconds = BulkHistogram(
    "redline_classify_duration_seconds",
    "Engine time per event (per-event share of a batch on the stream).",
    ["source"],
    buckets=_CLASSIFY_BUCKETS,
)
end_to_end_lag_seconds = BulkHistogram(
    "redline_end_to_end_lag_seconds",
    "From the event's sent_at to its verdict being produced.",
    buckets=_LAG_BUCKETS,
)
rule_pack = Info("redline_rule_pack", "The rule pack currently serving.")
rule_pack_rules = Gauge("redline_rule_pack_rules", "Rules in the pack currently serving.")
rule_pack_reloads_total = Counter(
    "redline_rule_pack_reloads_total", "Rule pack reload attempts by result.", ["result"]
)
rule_pack_loaded_timestamp_seconds = Gauge(
    "redline_rule_pack_loaded_timestamp_seconds", "Unix time the serving pack was installed."
)

for _source in SOURCES:
    events_classified_total.labels(_source)
    classify_duration_seconds.labels(_source)
    for _action in ACTIONS:
        verdicts_total.labels(_source, _action)
for _reason in DEAD_LETTER_REASONS:
    events_dead_lettered_total.labels(_reason)
for _result in ("success", "failure"):
    rule_pack_reloads_total.labels(_result)


def observe_pack(name: str, version: str, digest: str, rules: Iterable[tuple[str, str]]) -> None:
    """Publish the serving pack and pre-initialise its per-rule series (`rules`: (id, category))."""
    rule_pack.info({"name": name, "version": version, "digest": digest})
    count = 0
    for rule_id, category in rules:
        count += 1
        for shadow in ("false", "true"):
            rule_matches_total.labels(rule_id, category, shadow)
            category_matches_total.labels(category, shadow)
    rule_pack_rules.set(count)


def observe_many(histogram: BulkHistogram | HistogramChild, amounts: Sequence[float]) -> None:
    """`observe(a)` for each amount, with one lock round for the batch (service.bulk_histogram)."""
    histogram.observe_many(amounts)


def observe_end_to_end_lags(sent_at: Sequence[float], now: float) -> None:
    """`end_to_end_lag_seconds` for verdicts produced at `now` of events sent at `sent_at` (epoch
    seconds); a sender's clock ahead of ours counts as no lag."""
    observe_many(end_to_end_lag_seconds, [max(0.0, now - sent) for sent in sent_at])


def record_dead_letters(letters: Iterable[DeadLetter]) -> None:
    """Count a batch's dead letters with one increment per reason."""
    for reason, count in Tally(letter.reason for letter in letters).items():
        events_dead_lettered_total.labels(reason).inc(count)


def record_counts(counts: VerdictCounts, source: str) -> None:
    """Apply a batch's verdicts, counted by service.verdict_counts: one increment per label set.
    The stream, the counter owner and HTTP (api/verdict_tally.py) all count their verdicts so."""
    _child(events_classified_total, source).inc(counts.total)
    for action, n in counts.actions.items():
        _child(verdicts_total, source, action).inc(n)
    for key, n in counts.rules.items():
        _child(rule_matches_total, *key).inc(n)
    for ckey, n in counts.categories.items():
        _child(category_matches_total, *ckey).inc(n)


@functools.lru_cache(maxsize=8192)
def _child(metric: Counter, *labels: str) -> Counter:
    """`metric.labels(...)` resolved once: the lookup (lock, validation) dominated small batches."""
    return metric.labels(*labels)


# --- stream (service/stream): partition labels are bounded by the input topic's partition count
# and removed when a partition is revoked.
stream_assigned_partitions = Gauge(
    "redline_stream_assigned_partitions", "Input-topic partitions assigned to this process."
)
stream_consumer_lag_records = Gauge(
    "redline_stream_consumer_lag_records",
    "Records behind the partition's high watermark after the last fetch.",
    ["partition"],
)
stream_in_flight_batches = Gauge(
    "redline_stream_in_flight_batches", "Batches produced but not yet acknowledged and committed."
)
stream_commits_total = Counter(
    "redline_stream_commits_total", "Offset commits by result.", ["result"]
)
stream_produce_failures_total = Counter(
    "redline_stream_produce_failures_total",
    "Produced batches the broker did not acknowledge (records are re-processed).",
)
for _result in ("success", "failure"):
    stream_commits_total.labels(_result)
stream_member_restarts_total = Counter(
    "redline_stream_member_restarts_total",
    "Stream member processes (stream_processes >= 2) that ended unexpectedly and were started again.",
)


# --- counters (service/counters): one replica owns each counter key (docs/counters.md).
counter_sightings_total = Counter(
    "redline_seen_sightings_total", "Sightings counted by the keys this process owns."
)
counter_keys = Gauge("redline_seen_keys", "Counter keys held in memory by this process.")
counter_keys_evicted_total = Counter(
    "redline_seen_keys_evicted_total",
    "Counter keys evicted because the per-process cap (counter_max_keys) was reached.",
)
counter_keys_expired_total = Counter(
    "redline_seen_keys_expired_total", "Counter keys dropped because their window passed."
)
counter_restored_keys_total = Counter(
    "redline_seen_restored_keys_total", "Counter keys restored from the changelog on assignment."
)
counter_restore_duration_seconds = Histogram(
    "redline_seen_restore_duration_seconds",
    "Time to restore the state of newly assigned counter partitions from the changelog.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


# --- http (the api package). `route` is the route template or "other", `method` a standard verb or
# "other": both bounded, so unknown paths cannot grow the series count.
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_HTTP_BUCKETS: Final = (
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)
http_requests_total = Counter(
    "redline_http_requests_total", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
http_request_duration_seconds = Histogram(
    "redline_http_request_duration_seconds",
    "HTTP request time from the first byte seen by the app to the last byte of the response.",
    ["route", "method"],
    buckets=_HTTP_BUCKETS,
)


# --- http rate limiting (service/api/rate_limit.py): no labels, so a key or IP never becomes a series.
http_rate_limited_total = Counter(
    "redline_http_rate_limited_total", "HTTP requests refused with 429 by the per-client rate limit."
)
# Failed authentication throttled per client address (service/api/auth_throttle.py).
http_auth_failures_total = Counter(
    "redline_http_auth_failures_total", "HTTP requests refused with 401 (missing or unknown bearer key)."
)
http_auth_throttled_total = Counter(
    "redline_http_auth_throttled_total",
    "HTTP requests refused with 429 because their address failed authentication too often.",
)


# --- the HTTP front (service/api/connection_guard.py): connections refused before the app saw them.
HTTP_REFUSALS: Final = (
    "connections", "header_size", "header_count", "header_timeout", "body_timeout", "invalid_request",
)
http_refused_connections_total = Counter(
    "redline_http_refused_connections_total",
    "HTTP connections answered and closed by the front before the app, by reason.",
    ["reason"],
)
for _reason in HTTP_REFUSALS:
    http_refused_connections_total.labels(_reason)
http_open_connections = Gauge("redline_http_open_connections", "HTTP connections open now.")


# --- image hashing (service/api/image_hasher.py): one observation per image sent to the hashing child.
# `result`: hashed (quality >= 50, added to media.pdq), low_quality (hashed but not used), refused (not
# an image Redline hashes: format, corrupt, over the pixel cap), failed (the child timed out or died).
IMAGE_HASH_RESULTS: Final = ("hashed", "low_quality", "refused", "failed")
# Through the child (docs/api.md): a 1 MP JPEG ~35 ms, a 12 MP PNG ~0.4 s, a 50 MP PNG ~1.5 s; timeout 10 s.
_IMAGE_HASH_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
image_hash_duration_seconds = Histogram(
    "redline_image_hash_duration_seconds",
    "Time to decode and PDQ-hash one image in the hashing child process (a child restart included).",
    buckets=_IMAGE_HASH_BUCKETS,
)
images_hashed_total = Counter(
    "redline_images_hashed_total", "Images sent to the hashing child process, by result.", ["result"]
)
for _result in IMAGE_HASH_RESULTS:
    images_hashed_total.labels(_result)
