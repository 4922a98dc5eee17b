"""Finished spans as an OTLP ``ExportTraceServiceRequest``, protobuf wire format, written directly.

The OTLP exporter builds a protobuf message object per span, attribute and value, then
serialises it: about 24 µs a span on this machine, on the exporter's thread, which holds the
GIL the event loop needs. Writing the wire format straight from the spans gives the same
bytes' meaning in about 4 µs (``bench/otlp_encoding.py``): what repeats from span to span
(attribute pairs, names, kinds, plain statuses, flags, the lengths' varints) is encoded once
and kept; what differs per request (``PER_REQUEST``) is written as it comes. A proxy's own span
(``RecordedSpan``) is written in one join, any other field by field; a span whose work is done can be
written from its fields (``encode_fields``, by ``proxy.tracing.ProxyTracer``), with the attributes that
repeat together encoded once per set of values (``KeptAttributes``). Callgrind, a request's four
spans as the proxy makes them, each encoded once: 221k instructions, 164k since the values met
once stopped going through a cache (2026-12-04), about 110k since the one join (2026-12-05).
Compiled with mypyc, with the rest of the tracing path, a request's tracing calls took 10 µs less in
``bench/tracing_calls.py``'s terms (19.5 against 31.9 warm, 78.6 against 88.6 cold): under 1 % of the
proxy's CPU, not worth a C compiler at install (docs/tracing-cost.md).
``tests/proxy/test_otlp_encoding.py`` parses the output with the official message classes and
requires it to equal what the SDK's own encoder (``encode_spans``) produces, field for field.

Field numbers are those of opentelemetry-proto's ``trace.proto``, ``common.proto`` and
``resource.proto`` (v1); absent and default values are left out, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from proxy.recorded_spans import NO_STATE, PLAIN_STATUSES, GroupValues, RecordedSpan

_FIXED64: Final = struct.Struct("<Q").pack
_FIXED32: Final = struct.Struct("<I").pack
_DOUBLE: Final = struct.Struct("<d").pack
# SpanFlags: the context says whether its parent is remote (bit 8), and if so bit 9.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_LOCAL_PARENT: Final = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE)
_REMOTE_PARENT: Final = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
# The start and end times (fields 7 and 8, fixed64), tags included.
_TIMES: Final = struct.Struct("<BQBQ").pack
# Span names are a small set too ("chat <model>", the routes): each one's field, made once.
_NAMES: Final[dict[str, bytes]] = {}
_MAX_NAMES: Final = 1024


_ONE_BYTE: Final = tuple(bytes((value,)) for value in range(0x80))
# Attribute keys are a small fixed set: each one's encoded ``KeyValue.key`` field, made once.
_KEYS: Final[dict[str, bytes]] = {}
_MAX_KEYS: Final = 4096
_SCALARS: Final = frozenset((str, bool, int, float))
# The proxy's attributes whose values differ from request to request (``proxy.tracing``): never cached.
PER_REQUEST: Final = frozenset(
    {
        "symphony.decision_id",
        "symphony.quota_remaining",
        "gen_ai.response.time_to_first_chunk",
    }
)
# Encoded pairs per field number (resource 1, event 3, link 4, span 9), per key: the type the key's
# values are kept for (its first value's: ``True``, ``1`` and ``1.0`` are equal in Python, not in OTLP)
# and each value's pair. Tuples are kept only when they hold strings, so an equal tuple (or a list, looked
# up by its tuple) holds the same strings.
_KEPT: Final[dict[int, dict[str, tuple[type, dict[Any, bytes]]]]] = {1: {}, 3: {}, 4: {}, 9: {}}
_TAGS: Final = {number: bytes((number << 3 | 2,)) for number in _KEPT}  # one byte each: numbers below 16
_MAX_VALUES: Final = 1024


def _varint(value: int) -> bytes:
    if value < _SHORT_MAX:
        return _SHORT[value]
    return _long_varint(value)


def _long_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The varints of the lengths a span's fields have as a rule (its own, each attribute's), made once.
_SHORT_MAX: Final = 2048
_SHORT: Final = tuple(_ONE_BYTE[n] if n < 0x80 else _long_varint(n) for n in range(_SHORT_MAX))


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, embedded messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, text: str | None) -> bytes:
    return _field(number, text.encode()) if text else b""


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s body."""
    if isinstance(value, str):
        encoded = value.encode()
        return b"\x0a" + _varint(len(encoded)) + encoded
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement, 10 bytes if negative
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Mapping):
        return _field(6, _attributes(1, value))
    return _field(5, b"".join(_field(1, _value(item)) for item in value))


def _key(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _field(1, str(key).encode())
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[key] = encoded
    return encoded


def _pair(tag: bytes, key: str, value: Any) -> bytes:
    body = _value(value)
    pair = _key(key) + b"\x12" + _varint(len(body)) + body
    return tag + _varint(len(pair)) + pair


def _string_pair(tag: bytes, key: str, text: str) -> bytes:
    """``_pair`` of a string, in one call: a per-request value (an id, a JSON snapshot) is written this
    way for every request, and the general path's five calls were most of its cost. Its three lengths
    come from the varint table, which holds them all unless the string is near its size (then, ``_pair``)."""
    encoded = text.encode()
    size = len(encoded)
    key_field = _KEYS.get(key) or _key(key)
    if size + len(key_field) > _SHORT_MAX - 8:  # the pair (at most 6 bytes more) would be past the table
        return _pair(tag, key, text)
    size_varint = _SHORT[size]
    value_size = 1 + len(size_varint) + size
    value_varint = _SHORT[value_size]
    pair_varint = _SHORT[len(key_field) + 1 + len(value_varint) + value_size]
    return b"".join((tag, pair_varint, key_field, b"\x12", value_varint, b"\x0a", size_varint, encoded))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a ``KeyValue`` in field ``number``.

    Most of a span's attributes repeat from span to span (the operation, the provider, the model,
    the policy version, the status code), so a pair's bytes are kept once made, per key and value,
    for values of the type the key's first one had; the loop below is the common case, a kept pair.
    The values that differ per request (``PER_REQUEST``) are written as they come: a lookup that
    never hits, and a cache they would fill, cost more than writing them.
    """
    if not attributes:
        return b""
    kept = _KEPT[number]
    parts = []
    for key, value in attributes.items():
        entry = kept.get(key)
        if entry is not None and type(value) is entry[0]:
            encoded = entry[1].get(value)
            if encoded is not None:
                parts.append(encoded)
                continue
        parts.append(_new_pair(number, key, value))
    return b"".join(parts)


def _new_pair(number: int, key: str, value: Any) -> bytes:
    """A pair not kept yet: a per-request value, a list or tuple (kept as a tuple if it holds strings
    only), a scalar (kept under its key), or anything else (a map, bytes), written as it is."""
    tag = _TAGS[number]
    if key in PER_REQUEST:
        return _string_pair(tag, key, value) if type(value) is str else _pair(tag, key, value)
    kind = type(value)
    if kind is list or kind is tuple:
        return _list_pair(number, tag, key, value)
    encoded = _pair(tag, key, value)
    if kind in _SCALARS:  # not a map, bytes, nor a subclass of a scalar
        _keep(number, key, kind, value, encoded)
    return encoded


def _list_pair(number: int, tag: bytes, key: str, value: Sequence[Any]) -> bytes:
    """A list's or tuple's pair, kept under its tuple when every item is a string (the route's
    candidates)."""
    known = tuple(value)
    entry = _KEPT[number].get(key)
    if entry is not None and entry[0] is tuple:
        encoded = entry[1].get(known)
        if encoded is not None:
            return encoded
    encoded = _pair(tag, key, value)
    if all(type(item) is str for item in known):
        _keep(number, key, tuple, known, encoded)
    return encoded


def _keep(number: int, key: str, kind: type, known: Any, encoded: bytes) -> None:
    """Keep ``encoded`` as ``known``'s pair under ``key``, if ``kind`` is the type the key keeps; each
    cache starts over when full."""
    by_key = _KEPT[number]
    entry = by_key.get(key)
    if entry is None:
        if len(by_key) >= _MAX_KEYS:
            by_key.clear()
        entry = by_key[key] = (kind, {})
    if entry[0] is kind:  # a key's values of another type are written each time
        values = entry[1]
        if len(values) >= _MAX_VALUES:
            values.clear()
        values[known] = encoded


def _count(number: int, count: int) -> bytes:
    return _varint(number << 3) + _varint(count) if count else b""


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


# Keyed by the members' ids (an Enum hashes in Python, slowly): members are singletons.
_KINDS: Final = {id(kind): b"\x30" + _varint(kind.value + 1) for kind in SpanKind}  # OTLP's INTERNAL is 1
_STATUSES: Final = {id(code): _field(15, _count(3, code.value)) for code in StatusCode}


def _name(name: str) -> bytes:
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = _text(5, name)
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[name] = encoded
    return encoded


def _status(status: Status) -> bytes:
    if status.description:  # a message of its own (an exception's): not worth keeping
        return _field(15, _text(2, status.description) + _count(3, status.status_code.value))
    return _STATUSES[id(status.status_code)]


# The statuses without a message that recorded spans hold (ids of objects kept alive by PLAIN_STATUSES).
_PLAIN_STATUS_FIELDS: Final = {id(status): _status(status) for status in PLAIN_STATUSES.values()}
UNSET_STATUS: Final = _PLAIN_STATUS_FIELDS[id(PLAIN_STATUSES[StatusCode.UNSET])]
# A span's ids (fields 1 and 2, then 4 under a parent), tags included: ids are big-endian bytes.
_IDS: Final = struct.Struct(">HQQHQ").pack
_IDS_AND_PARENT: Final = struct.Struct(">HQQHQHQ").pack
_LOW_64: Final = (1 << 64) - 1


def encode_span(span: ReadableSpan | RecordedSpan) -> bytes:
    """``span`` as an entry of a ``ScopeSpans``' spans: what ``encode_scope_request`` puts together.

    A proxy's span (a ``RecordedSpan`` without a trace state) is written in one join (``encode_fields``):
    this runs on the event loop for each of a request's spans, and every call and property read here is
    paid there. Anything else goes through ``_span``, field by field."""
    trace_id, span_id, _, _, state, _ = span.context  # a tuple: no property calls
    if type(span) is not RecordedSpan or (state is not NO_STATE and state) or span.events:
        body = _span(span)
        size = len(body)
        return b"\x12" + (_SHORT[size] if size < _SHORT_MAX else _long_varint(size)) + body  # field 2
    status = span.status
    return encode_fields(
        trace_id,
        span_id,
        span.parent,
        span.name,
        span.kind,
        span.start_time,
        span.end_time or 0,
        _attributes(9, span.attributes),
        _PLAIN_STATUS_FIELDS.get(id(status)) or _status(status),
    )


def encode_fields(
    trace_id: int,
    span_id: int,
    parent: SpanContext | None,
    name: str,
    kind: SpanKind,
    start_time: int,
    end_time: int,
    attributes: bytes,
    status: bytes = UNSET_STATUS,
) -> bytes:
    """A span without a trace state nor events, from its fields, as ``encode_span`` writes it: in one join.
    ``attributes``: its pairs (``encode_attributes``, ``KeptAttributes``); ``status``: its field."""
    if parent is None:
        ids, flags = _IDS(0x0A10, trace_id >> 64, trace_id & _LOW_64, 0x1208, span_id), _LOCAL_PARENT
    else:
        ids = _IDS_AND_PARENT(0x0A10, trace_id >> 64, trace_id & _LOW_64, 0x1208, span_id, 0x2208, parent[1])
        flags = _REMOTE_PARENT if parent[2] else _LOCAL_PARENT
    body = b"".join(
        (
            ids,
            _NAMES.get(name) or _name(name),
            _KINDS[id(kind)],
            _TIMES(0x39, start_time, 0x41, end_time),
            attributes,
            status,
            flags,
        )
    )
    size = len(body)  # its varint as ``_varint`` writes it, without the call (on the loop, for each span)
    return b"\x12" + (_SHORT[size] if size < _SHORT_MAX else _long_varint(size)) + body  # field 2


def encode_attributes(attributes: Mapping[str, Any]) -> bytes:
    """A span's attributes as its ``KeyValue`` fields, for ``encode_fields``."""
    return _attributes(9, attributes)


class KeptAttributes:
    """Attributes that a kind of span carries together, with values that repeat together (the route's
    policy, version, choice and candidates): their pairs encoded once per set of values and kept, one
    lookup for them all where ``encode_attributes`` makes one per pair.

    Values are strings and tuples of strings: a set of values is looked up as a tuple, in which ``True``,
    ``1`` and ``1.0`` would be equal, and in OTLP they are not."""

    def __init__(self, *keys: str) -> None:
        self.keys = keys
        self._kept: dict[GroupValues, bytes] = {}

    def encoded(self, values: GroupValues) -> bytes:
        """The pairs of ``keys`` and ``values``, in that order; each cache starts over when full."""
        encoded = self._kept.get(values)
        if encoded is None:
            encoded = _attributes(9, self.as_dict(values))
            if len(self._kept) >= _MAX_VALUES:
                self._kept.clear()
            self._kept[values] = encoded
        return encoded

    def as_dict(self, values: GroupValues) -> dict[str, Any]:
        return dict(zip(self.keys, values, strict=True))


def _span(span: ReadableSpan | RecordedSpan) -> bytes:
    """One ``Span``'s body, any span's: the fields a span has every time first, the rare ones (events,
    links, drop counts) only when present."""
    context = span.get_span_context()
    assert context is not None  # a finished SDK span always has one
    trace_id, span_id, _, _, state, _ = context  # a tuple: no property calls
    parent = span.parent
    parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
    if state:
        parts.append(_text(3, ",".join(f"{key}={value}" for key, value in state.items())))
    if parent is not None:
        parts += (b"\x22\x08", parent[1].to_bytes(8, "big"))  # its span id
    name = span.name
    parts += (
        _NAMES.get(name) or _name(name),
        _KINDS[id(span.kind)],
        _TIMES(0x39, span.start_time or 0, 0x41, span.end_time or 0),
        _attributes(9, span.attributes),
    )
    if span.events or span.links or span.dropped_attributes or span.dropped_events or span.dropped_links:
        parts += _rare_fields(span)
    parts.append(_status(span.status))
    parts.append(_REMOTE_PARENT if parent is not None and parent[2] else _LOCAL_PARENT)  # its is_remote
    return b"".join(parts)


def _rare_fields(span: ReadableSpan | RecordedSpan) -> list[bytes]:
    """The fields a span of the proxy's seldom has: drop counts, events (an exception's), links."""
    parts = []
    if span.dropped_attributes:
        parts.append(_count(10, span.dropped_attributes))
    for event in span.events:
        body = b"\x09" + _FIXED64(event.timestamp) + _text(2, event.name) + _attributes(3, event.attributes)
        parts.append(_field(11, body + _count(4, event.dropped_attributes)))
    if span.dropped_events:
        parts.append(_count(12, span.dropped_events))
    for link in span.links:
        body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big")
        body += b"\x12\x08" + link.context.span_id.to_bytes(8, "big")
        body += _attributes(4, link.attributes) + _count(5, link.dropped_attributes)
        parts.append(_field(13, body + b"\x35" + _FIXED32(_flags(link.context))))
    if span.dropped_links:
        parts.append(_count(14, span.dropped_links))
    return parts


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return _text(1, scope.name) + _text(2, scope.version) + _attributes(3, scope.attributes)


def _grouped(
    spans: Iterable[ReadableSpan],
) -> list[tuple[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]]]:
    # By identity: a Resource hashes by dumping its attributes to JSON, for every span. A process's
    # spans share one Resource object; equal ones that are not the same object are grouped apart,
    # which OTLP allows.
    groups: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]]] = {}
    for span in spans:
        resource = span.resource
        group = groups.get(id(resource))
        if group is None:
            group = groups[id(resource)] = (resource, {})
        group[1].setdefault(span.instrumentation_scope or None, []).append(span)
    return list(groups.values())


def encode_scope_request(
    resource: Resource, scope: InstrumentationScope | None, encoded_spans: Sequence[bytes]
) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` of spans that share ``resource`` and ``scope``, each
    already encoded by ``encode_span``.

    Put together in one join: a batch (2,048 spans, about 700 KB) is copied once, not once for each message
    around it (six copies into fresh memory took the exporter's thread 1 ms a batch, one join 0.2 ms)."""
    return b"".join(_resource_spans(resource, [_scope_spans(scope, encoded_spans)])) if encoded_spans else b""


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` of ``spans``: per resource, per scope, its spans."""
    out: list[bytes] = []
    for resource, scopes in _grouped(spans):
        scope_spans = [_scope_spans(scope, [*map(encode_span, members)]) for scope, members in scopes.items()]
        out += _resource_spans(resource, scope_spans)
    return b"".join(out)


def _scope_spans(scope: InstrumentationScope | None, encoded_spans: Sequence[bytes]) -> list[bytes]:
    """A ``ResourceSpans``' ``ScopeSpans`` (field 2), as the parts to join."""
    schema_url = _text(3, scope.schema_url if scope is not None else None)
    return _delimited(2, [_field(1, _scope(scope)), *encoded_spans, schema_url])


def _resource_spans(resource: Resource, scope_spans: list[list[bytes]]) -> list[bytes]:
    """The request's ``ResourceSpans`` (field 1), as the parts to join."""
    attributes = _field(1, _attributes(1, resource.attributes))
    return _delimited(1, [attributes, *chain.from_iterable(scope_spans), _text(3, resource.schema_url)])


def _delimited(number: int, parts: list[bytes]) -> list[bytes]:
    """``_field(number, b"".join(parts))`` as parts: its tag and length, then ``parts``, not copied."""
    return [_varint(number << 3 | 2), _varint(sum(map(len, parts))), *parts]
