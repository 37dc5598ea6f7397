"""Prometheus metrics: the gateway's status, read at scrape time.

One custom collector turns a :class:`~gateway.status.GatewayStatus` into metric families when
it is collected, so there are no counters sprinkled through the code to drift from what
``fmfb status`` says: both read the same record. Names:

=========================================  ======================================================
``fmfb_info{version,gateway_id}``           1
``fmfb_sink_up{sink}``                      the sink's link is up (1/0)
``fmfb_sink_backlog_events{sink}``          events past the sink's cursor
``fmfb_sink_oldest_pending_age_seconds``    age of the first of them (0 with no backlog)
``fmfb_sink_last_success_timestamp_seconds``  when a delivery was last acknowledged
``fmfb_sink_delivered_total{sink}``         events delivered since start
``fmfb_sink_dead_lettered_total{sink}``     events given up on since start
``fmfb_link_up{input}``                     an input's MQTT link (the buttons') is up (1/0)
``fmfb_journal_size_bytes``                 the database and its WAL
``fmfb_journal_rows``                       durable rows (seq is gapless from 1)
``fmfb_journal_held_events``                events held in memory while the disk fails
``fmfb_journal_disk_failing``               1 while commits fail
``fmfb_journal_commit_seconds``             commit latency (histogram)
``fmfb_feeder_online``                      1 online, 0 offline (absent: never heard)
``fmfb_feeder_food_level_percent``          the last reported food level
``fmfb_feeds_in_cap_period{bowl}``          accepted feeds in the rolling cap period
``fmfb_feed_cap_per_bowl``                  the cap they count against
``fmfb_bad_input_total{source,field}``      input refused at the door, by source and field
=========================================  ======================================================

prometheus_client is imported here and nowhere else but the exporter: only a gateway with
metrics configured loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.latency import COMMIT_BUCKETS_S
from gateway.status import GatewayStatus

StatusSource = Callable[[], GatewayStatus]


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class StatusCollector(Collector):
    """Collects from ``status()`` at each scrape; ``now_ms`` for ages (injectable in tests)."""

    def __init__(self, status: StatusSource, now_ms: Callable[[], int] | None = None) -> None:
        self._status = status
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def collect(self) -> Iterator[Metric]:
        st = self._status()
        now_ms = self._now_ms()
        info = _gauge("fmfb_info", "The running gateway.", ("version", "gateway_id"))
        info.add_metric([st.version, st.gateway_id], 1)
        yield info
        yield from _sinks(st, now_ms)
        yield from _journal(st)
        yield from _feeder(st)
        links = _gauge("fmfb_link_up", "An input's broker link is up.", ("input",))
        for part in st.inputs:
            if part.connected is not None:
                links.add_metric([part.name], float(part.connected))
        yield links
        bad = CounterMetricFamily(
            "fmfb_bad_input", "Input refused at the door.", labels=["source", "field"]
        )
        for key, n in sorted(st.bad_inputs.items()):
            source, _, field = key.rpartition(":")
            bad.add_metric([source or key, field if source else ""], n)
        yield bad


def _sinks(st: GatewayStatus, now_ms: int) -> Iterator[Metric]:
    up = _gauge("fmfb_sink_up", "The sink's link is up.", ("sink",))
    backlog = _gauge("fmfb_sink_backlog_events", "Events past the sink's cursor.", ("sink",))
    oldest = _gauge(
        "fmfb_sink_oldest_pending_age_seconds",
        "Age of the oldest event the sink has not finished (0: none).",
        ("sink",),
    )
    success = _gauge(
        "fmfb_sink_last_success_timestamp_seconds",
        "When the sink last had a delivery acknowledged (Unix time).",
        ("sink",),
    )
    delivered = CounterMetricFamily(
        "fmfb_sink_delivered", "Events delivered since start.", labels=["sink"]
    )
    dead = CounterMetricFamily(
        "fmfb_sink_dead_lettered", "Events given up on since start.", labels=["sink"]
    )
    for s in st.sinks:
        up.add_metric([s.name], float(s.connected))
        backlog.add_metric([s.name], s.backlog)
        age_ms = 0 if s.oldest_pending_ms is None else max(0, now_ms - s.oldest_pending_ms)
        oldest.add_metric([s.name], age_ms / 1000)
        if s.last_success_ms is not None:
            success.add_metric([s.name], s.last_success_ms / 1000)
        delivered.add_metric([s.name], s.delivered)
        dead.add_metric([s.name], s.dead_lettered)
    yield from (up, backlog, oldest, success, delivered, dead)


def _journal(st: GatewayStatus) -> Iterator[Metric]:
    j = st.journal
    yield GaugeMetricFamily(
        "fmfb_journal_size_bytes", "The journal's database and WAL.", value=j.size_bytes
    )
    yield GaugeMetricFamily(
        "fmfb_journal_rows", "Durable rows in the journal.", value=j.durable_seq
    )
    yield GaugeMetricFamily(
        "fmfb_journal_held_events", "Events held in memory while the disk fails.", value=j.held
    )
    yield GaugeMetricFamily(
        "fmfb_journal_disk_failing", "1 while journal commits fail.", value=float(j.disk_failing)
    )
    commits = HistogramMetricFamily("fmfb_journal_commit_seconds", "Journal commit latency.")
    if j.commit_counts:
        buckets: list[tuple[str, float]] = []
        running = 0
        bounds = [*(repr(b) for b in COMMIT_BUCKETS_S), "+Inf"]
        for bound, n in zip(bounds, j.commit_counts, strict=False):
            running += n
            buckets.append((bound, running))
        commits.add_metric([], buckets, j.commit_seconds)
    yield commits


def _feeder(st: GatewayStatus) -> Iterator[Metric]:
    f = st.feeder
    online = _gauge("fmfb_feeder_online", "1: the feeder is online; 0: offline.")
    if f.online is not None:
        online.add_metric([], float(f.online))
    yield online
    level = _gauge("fmfb_feeder_food_level_percent", "The feeder's last reported food level.")
    if f.food_level is not None:
        level.add_metric([], f.food_level)
    yield level
    feeds = _gauge(
        "fmfb_feeds_in_cap_period", "Accepted feeds in the rolling cap period.", ("bowl",)
    )
    for bowl, n in sorted(f.feeds_in_period.items()):
        feeds.add_metric([bowl], n)
    yield feeds
    if f.cap_per_bowl is not None:
        yield GaugeMetricFamily(
            "fmfb_feed_cap_per_bowl", "Feeds allowed per bowl per period.", value=f.cap_per_bowl
        )


def registry_for(
    status: StatusSource, now_ms: Callable[[], int] | None = None
) -> CollectorRegistry:
    """A registry holding only the gateway's collector (no process or platform collectors:
    node_exporter has those, and the textfile must carry only our names)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status, now_ms))
    return registry
