"""The span queue's rounds: what is queued goes every delay (or once a whole batch is), in one post; spans
that come while a post is on its way wait for the next round instead of a post of their own."""

from __future__ import annotations

import threading
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from proxy.recorded_spans import RecordingTracer
from proxy.span_queue import SpanEncoder, SpanQueue
from tests.waiting import wait_until

SPAN = b"span"  # the queue only holds encoded spans and hands them to the batch encoder


class GatedSender:
    """Records each post's span count; the first post waits until released."""

    def __init__(self) -> None:
        self.posts: list[int] = []
        self.posting = threading.Event()
        self.release = threading.Event()

    def send(self, payload: bytes) -> bool:
        self.posts.append(int(payload))
        self.posting.set()
        self.release.wait(10)
        return True

    def shutdown(self) -> None:
        self.release.set()


def counting_queue(sender: GatedSender, *, max_batch: int, delay_s: float) -> SpanQueue:
    encode = lambda spans: b"%d" % len(spans)  # noqa: E731  # the count stands in for the encoding
    return SpanQueue("test", sender, encode, max_queue=64, max_batch=max_batch, delay_s=delay_s)


def test_spans_that_come_during_a_post_wait_for_the_next_round() -> None:
    sender = GatedSender()
    queue = counting_queue(sender, max_batch=16, delay_s=1.0)
    for _ in range(5):
        queue.put(SPAN)
    assert sender.posting.wait(5)  # the first round took the 5 and is posting them
    for _ in range(3):
        queue.put(SPAN)
    sender.release.set()
    time.sleep(0.5)  # the next round is a whole delay (1 s) after the post returned
    assert sender.posts == [5]
    wait_until(lambda: len(sender.posts) == 2, 5.0, every_s=0.01)
    assert sender.posts == [5, 3]
    queue.close_within(5)
    assert (queue.exported, queue.dropped) == (8, 0)


def test_a_whole_batch_that_came_during_a_post_goes_at_once_and_close_sends_the_rest() -> None:
    sender = GatedSender()
    queue = counting_queue(sender, max_batch=4, delay_s=30.0)
    for _ in range(4):
        queue.put(SPAN)  # a whole batch: no waiting for the delay
    assert sender.posting.wait(5)
    for _ in range(9):
        queue.put(SPAN)
    sender.release.set()
    wait_until(lambda: sum(sender.posts) >= 12, 5.0, every_s=0.01)
    assert sender.posts[:3] == [4, 4, 4]
    queue.close_within(5)  # the last one goes at close, not 30 s later
    assert sum(sender.posts) == 13 and (queue.exported, queue.dropped) == (13, 0)


def test_a_span_that_cannot_be_encoded_is_dropped_and_counted_and_its_request_goes_on() -> None:
    sender = GatedSender()
    sender.release.set()
    queue = counting_queue(sender, max_batch=16, delay_s=30.0)
    resource = Resource.create({"service.name": "symphony-proxy"})
    tracer = RecordingTracer(resource, InstrumentationScope("test"), [SpanEncoder([queue])])
    broken = tracer.start_child("broken", None)
    broken.set_attribute("not.an.otlp.value", object())  # type: ignore[arg-type]  # what a bug could set
    broken.end()  # would raise into the request if the encoder's error escaped
    tracer.start_child("fine", None).end()
    queue.close_within(5)
    assert (queue.exported, queue.dropped) == (1, 1)
    assert sender.posts == [1]
