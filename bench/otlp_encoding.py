"""Measure the proxy's OTLP encoding (``proxy.otlp_encoding``) against the SDK's own encoder, same run.

It builds the spans of ``--requests`` proxied requests the way the proxy does (``bench/proxied_request.py``:
``proxy.tracing``'s helpers on a ``RecordingTracer``: the server span, the route, the quota reservation and
one provider attempt, each with its attributes), then encodes them as one batch, ``--rounds``
times, with each encoder: ``proxy.otlp_encoding.encode_request`` and the SDK's
``encode_spans(...).SerializeToString()``. The proxy runs the first's per-span part
(``encode_span``) as each span ends and the join on its exporter's thread. It
checks that both say the same (the bytes parse to equal messages) and prints the microseconds a
span and a request take with each, and the ratio.

    .venv/bin/python bench/otlp_encoding.py
    .venv/bin/python bench/otlp_encoding.py --requests 500 --rounds 10 --json
    .venv/bin/python bench/otlp_encoding.py --smoke      # exits 1 if the encoders disagree
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's proxy

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from proxied_request import SPANS_PER_REQUEST, trace_request, usage

from proxy import tracing
from proxy.otlp_encoding import encode_request
from proxy.recorded_spans import RecordingTracer


class _Kept(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def proxied_spans(requests: int) -> list[ReadableSpan]:
    """The spans ``requests`` proxied chat requests make, with the proxy's own attributes."""
    kept = _Kept()
    tracer = RecordingTracer(
        Resource.create({"service.name": tracing.SERVICE_NAME}),
        InstrumentationScope(tracing.TRACER_NAME),
        [kept],
    )
    for number in range(requests):
        trace_request(tracer, number, usage(number))
    return kept.spans


def best_of(rounds: int, encode: Callable[[], bytes]) -> float:
    """The fastest of ``rounds`` encodings, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        encode()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(requests: int, rounds: int) -> dict[str, Any]:
    spans = proxied_spans(requests)
    ours, sdk = encode_request(spans), encode_spans(spans).SerializeToString()
    if ExportTraceServiceRequest.FromString(ours) != ExportTraceServiceRequest.FromString(sdk):
        print("the two encoders disagree: tests/proxy/test_otlp_encoding.py says where", file=sys.stderr)
        raise SystemExit(1)
    ours_s = best_of(rounds, lambda: encode_request(spans))
    sdk_s = best_of(rounds, lambda: encode_spans(spans).SerializeToString())
    per_span = {"proxy": ours_s / len(spans) * 1e6, "sdk": sdk_s / len(spans) * 1e6}
    return {
        "spans": len(spans),
        "bytes_per_span": len(ours) / len(spans),
        "us_per_span": per_span,
        "us_per_request": {name: value * SPANS_PER_REQUEST for name, value in per_span.items()},
        "speed_ratio": sdk_s / ours_s,
        "rounds": rounds,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests whose spans make the batch (500)")
    parser.add_argument("--rounds", type=int, default=10, help="encodings of the batch per encoder (10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    parser.add_argument("--smoke", action="store_true", help="20 requests, 2 rounds: the encoders agree")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.rounds = 20, 2
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args.requests, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ours, sdk = result["us_per_span"]["proxy"], result["us_per_span"]["sdk"]
    print(f"{result['spans']} spans ({args.requests} requests), {result['bytes_per_span']:.0f} bytes a span")
    print(f"proxy.otlp_encoding  {ours:6.2f} us/span  {ours * SPANS_PER_REQUEST:6.1f} us/request")
    print(f"SDK encode_spans     {sdk:6.2f} us/span  {sdk * SPANS_PER_REQUEST:6.1f} us/request")
    print(f"the proxy's encoder is {result['speed_ratio']:.1f}x the SDK's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
