"""Garbage-collector tuning: the engine's dataflow (throughput) and the proxy (its latency tail).

The flow allocates (and frees) a few objects per event, and with Python's default
thresholds (a young collection every 700 allocations) it spent a third of its time in
the collector. Collecting the young generation every 100,000 allocations instead, and
freezing what start-up loaded so no collection rescans it, measured +50% events/s
(bench/dataflow_throughput.py). Not the thresholds for the proxy: there the rarer, larger
collections lengthened the latency tail (bench/proxy_overhead.py: p99 +4 ms -> +88 ms at 200 req/s).

The proxy freezes what start-up loaded (``freeze_startup``) and keeps the default thresholds.
With tracing on, the spans waiting for export (about a second's worth) survive the young
collections, so full collections come every few seconds, and each walked the ~170,000 objects
start-up made: about 70 ms with the event loop stopped, the traced proxy's p99 (+55 ms at 300
req/s, bench/tracing_overhead.py). Frozen, they are never walked again: p99 +3.4 ms.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 100)


def freeze_startup() -> None:
    """Move every object start-up made out of the collector's reach. Call once start-up is done."""
    gc.collect()
    gc.freeze()


def tune_gc() -> None:
    """Collect less often, and never rescan what start-up loaded. Call once start-up is done."""
    freeze_startup()
    gc.set_threshold(*GC_THRESHOLDS)
