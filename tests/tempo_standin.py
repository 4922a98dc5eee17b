"""A small local stand-in for Grafana Tempo that records every call made to it.

It takes OTLP/HTTP protobuf on ``POST /v1/traces`` (decoded as ``ExportTraceServiceRequest``,
as Tempo's distributor does) and answers ``GET /api/search`` as Tempo's search API documents
it: ``q`` a TraceQL query (only ``{ resource.service.name = "<name>" }`` is understood),
``start``/``end`` in Unix seconds, ``limit``; the answer ``{"traces": [{"traceID", "rootServiceName",
"rootTraceName", "startTimeUnixNano", "durationMs"}]}``, trace ids without leading zeros, as
Tempo prints them. Anything else is a 400, as Tempo answers a query it cannot parse.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_SERVICE_QUERY = re.compile(r'^\{\s*resource\.service\.name\s*=\s*"([^"]*)"\s*\}$')


@dataclass
class StoredTrace:
    trace_id: str
    service: str
    root_name: str
    start_ns: int
    end_ns: int


@dataclass
class TempoStandIn:
    traces: dict[str, StoredTrace] = field(default_factory=dict)
    searches: list[dict[str, str]] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if urlsplit(self.path).path != "/v1/traces":
                    self._answer(404, b"not found", "text/plain")
                    return
                standin.take(ExportTraceServiceRequest.FromString(body))
                self._answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/api/search":
                    self._answer(404, b"not found", "text/plain")
                    return
                params = {name: values[-1] for name, values in parse_qs(parts.query).items()}
                status, answer = standin.search(params)
                self._answer(status, json.dumps(answer).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            self.posts += 1
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        trace_id = span.trace_id.hex()
                        stored = self.traces.get(trace_id)
                        if stored is None:
                            stored = StoredTrace(trace_id, service, "", span.start_time_unix_nano, 0)
                            self.traces[trace_id] = stored
                        if not span.parent_span_id or span.kind == span.SPAN_KIND_SERVER:
                            stored.root_name = span.name
                        stored.start_ns = min(stored.start_ns, span.start_time_unix_nano)
                        stored.end_ns = max(stored.end_ns, span.end_time_unix_nano)

    def search(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.searches.append(params)
            match = _SERVICE_QUERY.match(params.get("q", "").strip())
            try:
                start, end = int(params["start"]), int(params["end"])
                limit = int(params.get("limit", "20"))
            except (KeyError, ValueError):
                return 400, {"error": "start, end and limit must be whole numbers"}
            if match is None:
                return 400, {"error": f"this stand-in cannot parse the TraceQL {params.get('q')!r}"}
            found = [
                t
                for t in self.traces.values()
                if t.service == match[1] and start * 10**9 <= t.start_ns <= end * 10**9
            ]
        traces = [
            {
                "traceID": t.trace_id.lstrip("0"),
                "rootServiceName": t.service,
                "rootTraceName": t.root_name,
                "startTimeUnixNano": str(t.start_ns),
                "durationMs": (t.end_ns - t.start_ns) // 10**6,
            }
            for t in sorted(found, key=lambda t: t.start_ns, reverse=True)[:limit]
        ]
        return 200, {"traces": traces, "metrics": {"inspectedTraces": len(found)}}

    def __enter__(self) -> TempoStandIn:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
