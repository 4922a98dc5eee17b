"""``POST /v1/traces``: the engine's OTLP/HTTP traces endpoint, into ClickHouse ``otel_traces``.

The proxy's exporter (``proxy.tracing``) posts its spans here, as the OTLP/HTTP spec has it:
an ``ExportTraceServiceRequest`` in protobuf (``Content-Type: application/x-protobuf``,
optionally ``Content-Encoding: gzip``). The spans are decoded and checked
(``sinks.otel_traces``) and buffered for the span writer (``sinks.span_writer``); the answer
never waits for ClickHouse.

Answers, per the spec (errors carry a protobuf ``google.rpc.Status`` whose message says why):

- 200 with an ``ExportTraceServiceResponse``: every span is buffered;
- 400: the body is not a valid request (not protobuf, a span without a valid trace or span id),
  nothing kept; 413: a body over ``MAX_BODY_BYTES`` (decompressed);
- 415: another content type (OTLP/JSON is not served) or encoding;
- 503 with ``Retry-After``: the buffer is full (ClickHouse slow or down); exporters retry it.

Who may post is the API's guard's business (``dataflows.api_auth``: the spans token or admin).
"""

from __future__ import annotations

import zlib

from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sinks.otel_traces import SpanPayloadError, spans_table
from sinks.span_writer import SpanWriter

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
MAX_BODY_BYTES = 16 << 20
RETRY_AFTER_S = 1


def _status(http_status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = status_pb2.Status(code=code, message=message).SerializeToString()
    return Response(body, http_status, headers=headers, media_type=PROTOBUF)


class TracesEndpoint:
    """The route's handler, over the span writer it feeds."""

    def __init__(self, writer: SpanWriter) -> None:
        self._writer = writer

    async def post(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != PROTOBUF:
            return _status(
                415,
                code_pb2.INVALID_ARGUMENT,
                f"expected Content-Type: {PROTOBUF} (OTLP/HTTP protobuf), not {content_type or 'none'!r}",
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return _status(415, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}")
        body = await _read_at_most(request, MAX_BODY_BYTES)
        if body is None:
            return _too_large()
        try:
            payload = _gunzip(body) if encoding == "gzip" else body
            rows = await run_in_threadpool(spans_table, payload)
        except _TooLarge:
            return _too_large()
        except SpanPayloadError as exc:
            return _status(400, code_pb2.INVALID_ARGUMENT, str(exc))
        if rows.num_rows and not self._writer.offer(rows):
            return _status(
                503,
                code_pb2.UNAVAILABLE,
                f"the span buffer is full ({rows.num_rows} spans refused): ClickHouse is behind; retry later",
                headers={"retry-after": str(RETRY_AFTER_S)},
            )
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF)


async def _read_at_most(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes (never held whole in memory then)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(Exception):
    pass


def _too_large() -> Response:
    return _status(413, code_pb2.RESOURCE_EXHAUSTED, f"the body is over {MAX_BODY_BYTES} bytes")


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        payload = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise SpanPayloadError(f"Content-Encoding is gzip but the body is not gzip: {exc}") from None
    if len(payload) > MAX_BODY_BYTES:
        raise _TooLarge
    return payload
