"""A latency histogram for the request path: counts by label values, the latest trace per bucket as its
exemplar, turned into Prometheus samples only when scraped.

``prometheus_client``'s ``Histogram`` finds a child by its labels (``labels()``: 2.7 µs), then per
observation takes a lock for the sum and each bucket and, with an exemplar, checks its labels and
builds an ``Exemplar`` with its own timestamp: 7.7 µs for one observation with an exemplar, twice a
request, on the event loop. Here an observation is a dict lookup, a bisect, two additions and, with
a trace, a tuple of the trace id (an int: hex is written at scrape time) and the time; about 1 µs.
Observations come from the event loop only; a scrape copies each child's lists before reading them.

The samples are ``prometheus_client``'s (``HistogramMetricFamily``), so both exposition formats
render them as they rendered the ``Histogram``'s (``_bucket`` with ``le`` as Go prints floats,
``_count``, ``_sum``; exemplars ``{trace_id="<32 hex>"}`` in OpenMetrics only), less the
``_created`` series, which no dashboard or alert of the project reads.
``tests/proxy/test_latency_histogram.py`` holds the two to the same samples.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from symphony.clock import wall_seconds

# An exemplar as kept: (trace id, the observed value, the wall-clock time).
_Kept = tuple[int, float, float]


class _Child:
    """One label set's counts: per bucket (not cumulative, +Inf last), the sum, the latest exemplars."""

    __slots__ = ("counts", "exemplars", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.exemplars: list[_Kept | None] = [None] * (buckets + 1)
        self.total = 0.0


class LatencyHistogram(Collector):
    """``name`` over ``labelnames``, in seconds, with ``buckets`` (upper bounds, ascending; +Inf added)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        if list(buckets) != sorted(buckets):
            raise ValueError(f"{name}: buckets must ascend, got {list(buckets)}")
        self.name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(bound) for bound in buckets)
        # As prometheus_client names its buckets (an untyped function of its own).
        self._les = (*(floatToGoString(bound) for bound in self._bounds), "+Inf")  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], _Child] = {}

    def observe(self, labels: tuple[str, ...], seconds: float, trace_id: int = 0) -> None:
        """Count ``seconds`` under ``labels`` (one value per label name); ``trace_id`` (0: none) is
        kept as the exemplar of the bucket it falls in."""
        child = self._children.get(labels)
        if child is None:
            if len(labels) != len(self._labelnames):
                raise ValueError(f"{self.name} takes labels {self._labelnames}, got {labels}")
            child = self._children[labels] = _Child(len(self._bounds))
        index = bisect_left(self._bounds, seconds)  # the first bound >= seconds, as `le` means
        child.counts[index] += 1
        child.total += seconds
        if trace_id:
            child.exemplars[index] = (trace_id, seconds, wall_seconds())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._labelnames)
        for labels, child in list(self._children.items()):
            counts, exemplars, total = list(child.counts), list(child.exemplars), child.total
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            cumulative = 0
            for le, count, kept in zip(self._les, counts, exemplars, strict=True):
                cumulative += count
                if kept is None:
                    buckets.append((le, cumulative))
                else:
                    trace_id, value, at = kept
                    buckets.append((le, cumulative, Exemplar({"trace_id": f"{trace_id:032x}"}, value, at)))
            family.add_metric(list(labels), buckets, total)
        yield family
