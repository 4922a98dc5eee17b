"""The request path's latency histogram gives the samples prometheus_client's own Histogram gives for the
same observations: the library is the independent model, both rendered and parsed by its exposition."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from proxy.latency_histogram import LatencyHistogram
from proxy.metrics import LATENCY_BUCKETS

NAME = "latency_seconds"
LABELS = ("route", "code")


def observed(seed: int) -> list[tuple[tuple[str, str], float, int]]:
    """Observations over three label sets: bounds exactly, beyond the last, zero, and random values."""
    rng = random.Random(seed)
    values = [*LATENCY_BUCKETS, 0.0, 75.0, 1e-9] + [rng.expovariate(8.0) for _ in range(300)]
    label_sets = [("/v1/chat/completions", "200"), ("/v1/messages", "429"), ("/v1/chat/completions", "0")]
    return [(rng.choice(label_sets), value, rng.getrandbits(128) or 1) for value in values]


def both(observations: list[tuple[tuple[str, str], float, int]]) -> tuple[CollectorRegistry, ...]:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = LatencyHistogram(NAME, "help", LABELS, LATENCY_BUCKETS)
    ours.register(histogram)
    model = Histogram(NAME, "help", LABELS, buckets=LATENCY_BUCKETS, registry=theirs)
    for labels, value, trace_id in observations:
        histogram.observe(labels, value, trace_id)
        model.labels(*labels).observe(value, {"trace_id": f"{trace_id:032x}"})
    return ours, theirs


def samples(text: str, parse: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    found = {}
    for family in parse(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):  # the library's own series, left out on purpose
                key = (sample.name, tuple(sorted(sample.labels.items())))
                exemplar = sample.exemplar and (sample.exemplar.labels, sample.exemplar.value)
                found[key] = (pytest.approx(sample.value), exemplar)
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_samples_and_exemplars_as_prometheus_clients_histogram(seed: int) -> None:
    ours, theirs = both(observed(seed))
    for generate, parse in ((generate_latest, parse_prometheus), (generate_openmetrics, parse_openmetrics)):
        mine = samples(generate(ours).decode(), parse)
        assert mine == samples(generate(theirs).decode(), parse)
        assert len(mine) == 3 * (len(LATENCY_BUCKETS) + 3)  # three label sets: buckets, +Inf, count, sum


def test_the_exemplar_is_the_latest_trace_in_its_bucket_written_as_32_hex_digits() -> None:
    histogram = LatencyHistogram(NAME, "help", ["route"], [0.1, 1.0])
    before = time.time()
    histogram.observe(("r",), 0.5, trace_id=0xAB)
    histogram.observe(("r",), 0.7, trace_id=0xCD)
    histogram.observe(("r",), 0.05)  # untraced: counted, no exemplar
    registry = CollectorRegistry()
    registry.register(histogram)
    families = list(parse_openmetrics(generate_openmetrics(registry).decode()))
    buckets = {s.labels["le"]: s for s in families[0].samples if s.name.endswith("_bucket")}
    assert [buckets[le].value for le in ("0.1", "1.0", "+Inf")] == [1, 3, 3]
    assert buckets["0.1"].exemplar is None and buckets["+Inf"].exemplar is None
    exemplar = buckets["1.0"].exemplar
    assert exemplar.labels == {"trace_id": "0" * 30 + "cd"} and exemplar.value == 0.7
    # Parsed into whole nanoseconds, so back as a float it may sit a hair below what was written.
    assert before - 1e-6 <= float(exemplar.timestamp) <= time.time()


def test_labels_of_the_wrong_arity_and_unsorted_buckets_are_refused() -> None:
    histogram = LatencyHistogram(NAME, "help", LABELS, LATENCY_BUCKETS)
    with pytest.raises(ValueError, match=r"takes labels \('route', 'code'\)"):
        histogram.observe(("/v1/chat/completions",), 0.1)
    with pytest.raises(ValueError, match="buckets must ascend"):
        LatencyHistogram(NAME, "help", LABELS, [1.0, 0.5])
