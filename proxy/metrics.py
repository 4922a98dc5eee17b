"""The proxy's ``GET /metrics``: Prometheus text, or OpenMetrics with trace-id exemplars.

Two latency histograms, each observation carrying the request's trace as an exemplar
(``{trace_id="<32 hex>"}``) when tracing is on, so a dashboard or an alert can go from a slow
bucket to the very request:

- ``symphony_request_duration_seconds{route, code}``: a routed request, from its arrival to the
  last byte of its answer (a stream's included), timed by ``proxy.request_observer``;
- ``symphony_provider_attempt_duration_seconds{provider, status}``: one provider attempt (its
  usage event's ``latency_ms``), observed when the attempt ends.

Beside them the process's counters (events, spans per destination, the quota gate), read
from the gateway at each scrape. The format follows the scraper's ``Accept`` header
(``prometheus_client.exposition.choose_encoder``): Prometheus asks for
``application/openmetrics-text`` when it stores exemplars, and only that format carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from opentelemetry.trace import Span
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from proxy.latency_histogram import LatencyHistogram
from symphony.events import Usage

# From a cached answer (~5 ms) to a long generation (a minute).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# The gateway's counters: name -> (kind, help); a tuple-keyed value is a labelled sample.
Counts = Mapping[str, float | Mapping[tuple[tuple[str, str], ...], float]]
COUNTERS: Final = {
    "symphony_events_published": ("counter", "Events the proxy published to the stream."),
    "symphony_events_dropped": ("counter", "Events the proxy dropped (its queue full, Redis down)."),
    "symphony_events_pending": ("gauge", "Events waiting in the proxy's queue."),
    "symphony_quota_degraded": ("gauge", "1 while the quota gate serves on local limits (Redis down)."),
    "symphony_quota_local_grants": ("counter", "Attempts the local quota limiter admitted."),
    "symphony_quota_local_tokens": ("counter", "Tokens the local quota limiter admitted."),
    "symphony_spans_exported": ("counter", "Spans exported, per destination."),
    "symphony_spans_dropped": ("counter", "Spans dropped (queue full, export failed, left at close)."),
}


class _Counts(Collector):
    """The gateway's counters at scrape time."""

    def __init__(self, read: Callable[[], Counts]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in self._read().items():
            kind, help_text = COUNTERS[name]
            samples = value if isinstance(value, Mapping) else {(): value}
            labels = sorted({key for sample in samples for key, _ in sample})
            family: CounterMetricFamily | GaugeMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(name, help_text, labels=labels)
            else:
                family = GaugeMetricFamily(name, help_text, labels=labels)
            for sample, number in samples.items():
                family.add_metric([v for _, v in sorted(sample)], float(number))
            yield family


class ProxyMetrics:
    """The process's registry (its own, not the global one: tests run several apps in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = LatencyHistogram(
            "symphony_request_duration_seconds",
            "Routed requests, from arrival to the answer's last byte; exemplar: the request's trace.",
            ["route", "code"],
            LATENCY_BUCKETS,
        )
        self.attempts = LatencyHistogram(
            "symphony_provider_attempt_duration_seconds",
            "Provider attempts, per provider and outcome; exemplar: the request's trace.",
            ["provider", "status"],
            LATENCY_BUCKETS,
        )
        self.registry.register(self.requests)
        self.registry.register(self.attempts)

    def count(self, read: Callable[[], Counts]) -> None:
        """Expose the gateway's counters, read at each scrape."""
        self.registry.register(_Counts(read))

    def attempt_finished(self, usage: Usage, span: Span | None) -> None:
        trace_id = span.get_span_context()[0] if span is not None else 0  # the tuple, not its property
        self.attempts.observe((usage.provider, usage.status), usage.latency_ms / 1000, trace_id)

    def request_finished(self, route: str, status: int, seconds: float, trace_id: int) -> None:
        """A routed request answered ``status`` (0: none) in ``seconds``; ``trace_id`` 0: not traced."""
        self.requests.observe((route, str(status)), seconds, trace_id)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for, and its content type."""
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # a version it cannot compare ("version=abc"): the plain text
            encoder, content_type = choose_encoder("")
        return encoder(self.registry), content_type
