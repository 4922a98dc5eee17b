"""Spans as plain records, ended into span processors: OpenTelemetry's API without the SDK's span
machinery on the request path.

The SDK's ``Span`` asks a sampler, copies and checks every attribute under a lock, keeps bounded
lists for events and links, and registers with the span processors at start: about 30 µs a span
on this machine, and the proxy makes four a request (``bench/tracing_overhead.py``). A
``RecordedSpan`` is the same API ``Span`` (``trace.set_span_in_context``, ``get_current_span``,
``with``, ``record_exception``) over a slotted record: attributes go into a dict as given, which
is safe because only the proxy's own code sets them, with the value types OTLP has.

Ended spans go to the tracer's processors (the proxy's: ``proxy.span_queue.SpanEncoder``, which encodes
each once and queues its bytes for every destination); a ``RecordedSpan`` reads like a ``ReadableSpan``
(``name``, ``kind``, ``context``, ``parent``, times, ``attributes``, ``events``, ``status``,
``resource``, ``instrumentation_scope``), so the SDK's own OTLP encoder accepts it too, which is
how ``tests/proxy/test_otlp_encoding.py`` checks ``proxy.otlp_encoding`` against it.

Sampling is the SDK default's (parent-based, always on): a span whose parent (the client's
``traceparent``) is not sampled is not recorded, and its ids still go on so the trace stays one.
"""

from __future__ import annotations

import functools
import random
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.util import types

SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
# The trace state of spans in a trace the proxy began: ``state is NO_STATE`` spares ``TraceState.__len__``, a
# Python call, on the request path.
NO_STATE: Final = TraceState()
# A status without a message, one object per code, which the OTLP encoder knows by identity.
PLAIN_STATUSES: Final = {code: Status(code) for code in StatusCode}
_UNSET: Final = PLAIN_STATUSES[StatusCode.UNSET]


def _parent_of(context: otel_context.Context | None) -> SpanContext | None:
    """The span context of ``context``'s span (the current context's by default), if it has one.

    ``trace.get_current_span``'s lookup without its layers (five calls and an ABC check, for each of
    a request's four spans): the key is the one ``trace.set_span_in_context`` stores the span under.
    """
    current = context if context is not None else otel_context.get_current()
    span: trace.Span | None = current.get(_SPAN_KEY)  # type: ignore[assignment]  # only the API puts it there
    return None if span is None else span.get_span_context()


_random_bits: Final = random.getrandbits


def _new_id(bits: int) -> int:
    """A random id; ``_random_bits(bits) or _new_id(bits)`` where every call counts (zero is invalid)."""
    ident = 0
    while not ident:
        ident = _random_bits(bits)
    return ident


def new_span_id() -> int:
    """A random span id (never zero)."""
    return _random_bits(64) or _new_id(64)


# Values of attributes that go together: strings and tuples of strings (``KeptGroup``).
GroupValues = tuple[str | tuple[str, ...], ...]


class KeptGroup(Protocol):
    """Attributes a kind of span carries together (``proxy.otlp_encoding.KeptAttributes``)."""

    def as_dict(self, values: GroupValues) -> dict[str, Any]:
        """The attributes with ``values``, in the group's order."""
        ...

    def encoded(self, values: GroupValues) -> bytes:
        """Their pairs in the OTLP wire format, as ``as_dict``'s would be encoded."""
        ...


# ``_new_context((trace_id, span_id, False, flags, state, True))`` is ``SpanContext(trace_id, span_id,
# False, flags, state)`` without its range check: a local span's ids come from ``_new_id`` or a valid
# parent, so they are valid, and ``SpanContext`` is a tuple whose last field says so.
_new_context: Final = functools.partial(tuple.__new__, SpanContext)


class RecordedSpan(trace.Span):
    """A recording span: its fields are what the OTLP encoders read, until ``end`` hands it on."""

    __slots__ = (
        "_tracer",
        "attributes",
        "context",
        "end_time",
        "events",
        "kind",
        "name",
        "parent",
        "start_time",
        "status",
    )
    links: tuple[Link, ...] = ()
    dropped_attributes = dropped_events = dropped_links = 0

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        span_context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        tracer: RecordingTracer,
        start_time: int | None = None,
    ) -> None:
        """``attributes``: a dict the span takes as its own."""
        self.name = name
        self.kind = kind
        self.context = span_context
        self.parent = parent
        self.start_time = start_time or time.time_ns()
        self.end_time: int | None = None
        self.attributes = attributes
        # A tuple until an event comes (rarely: an exception): no list made for the spans that have none.
        self.events: Sequence[Event] = ()
        self.status = _UNSET
        self._tracer = tracer

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._tracer.scope

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, Status):
            self.status = status
        else:
            self.status = Status(status, description) if description else PLAIN_STATUSES[status]

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        self.events = (*self.events, Event(name, attributes, timestamp or time.time_ns()))

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with the semantic conventions' attributes, as the SDK records it."""
        kind = type(exception)
        module = kind.__module__
        recorded: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{kind.__qualname__}" if module != "builtins" else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        self.add_event("exception", {**recorded, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:  # ended twice: the first end counts, as in the SDK
            return
        self.end_time = end_time or time.time_ns()
        for processor in self._tracer.processors:
            processor.on_end(self)  # type: ignore[arg-type]  # reads as a ReadableSpan (module docstring)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.end_time is None:
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class RecordingTracer(trace.Tracer):
    """Starts ``RecordedSpan``s under the current (or given) context's span, ended into ``processors``."""

    def __init__(
        self, resource: Resource, scope: InstrumentationScope, processors: Sequence[SpanProcessor]
    ) -> None:
        self.resource = resource
        self.scope = scope
        self.processors = tuple(processors)

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self.start_child(name, _parent_of(context), kind, dict(attributes or {}), start_time)

    def start_child(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
        start_time: int | None = None,
    ) -> trace.Span:
        """``start_span`` under ``parent`` (None or invalid: a new trace), given rather than looked up in
        an OpenTelemetry context: the proxy's request path holds its parent, and the lookup cost as much
        as the rest of starting a span. ``attributes``: a dict the span takes as its own."""
        if parent is None:
            return self._start_root(name, kind, attributes, start_time)
        trace_id, _, _, flags, state, valid = parent  # a tuple: no property calls
        if not valid:
            return self._start_root(name, kind, attributes, start_time)
        own = _new_context((trace_id, _random_bits(64) or _new_id(64), False, flags, state, True))
        if not flags & 1:  # TraceFlags.SAMPLED
            return trace.NonRecordingSpan(own)
        return RecordedSpan(
            name, kind, own, parent, attributes if attributes is not None else {}, self, start_time
        )

    def _start_root(
        self, name: str, kind: SpanKind, attributes: dict[str, Any] | None, start_time: int | None
    ) -> RecordedSpan:
        own = _new_context((_new_id(128), _new_id(64), False, SAMPLED, NO_STATE, True))
        return RecordedSpan(
            name, kind, own, None, attributes if attributes is not None else {}, self, start_time
        )

    def record_finished(
        self,
        name: str,
        kind: SpanKind,
        parent: SpanContext | None,
        start_time: int,
        group: KeptGroup,
        values: GroupValues,
        attributes: dict[str, Any],
    ) -> None:
        """A span whose work is done, from ``start_time`` to now, under ``parent``: its attributes the
        ``group``'s with ``values``, then ``attributes``. Here as any span is made and ended; the proxy's
        tracer (``proxy.tracing.ProxyTracer``) writes it straight to its bytes."""
        self.start_child(name, parent, kind, {**group.as_dict(values), **attributes}, start_time).end()

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's signature, as a generator
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current
