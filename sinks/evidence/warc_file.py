"""The WARC 1.1 file of a bundle: the provider exchanges and status pages, with SHA-256 digests.

warcio writes SHA-1 digests unless told otherwise; ``Sha256Writer`` gives it a SHA-256
digester, so ``WARC-Block-Digest`` and ``WARC-Payload-Digest`` are ``sha256:<base32>``.
Record ids (``uuid5`` of the record's place and content) and dates (the exchange's own time)
come from the inputs, so the same inputs give the same bytes.

Records: a ``warcinfo``; per exchange a ``request`` and a ``response`` linked by
``WARC-Concurrent-To`` (the request alone when no answer came); per attempt without an
exchange a ``metadata`` record holding what the proxy recorded of it (its usage event:
status, rate-limit headers, tokens, cost); per status page a ``response``. Every header
and body is redacted before it is written.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable
from typing import Any

from warcio.recordbuilder import RecordBuilder
from warcio.statusandheaders import StatusAndHeaders
from warcio.utils import Digester
from warcio.warcwriter import WARCWriter

from sinks.evidence.inputs import Exchange, IncidentInputs, StatusPage
from symphony import clock
from symphony.redaction import Redactor

WARC_NAME = "archive/exchanges.warc"
HTTP_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
                500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout", 529: "Overloaded"}  # fmt: skip


class Sha256Writer(WARCWriter):  # type: ignore[misc]
    @staticmethod
    def _create_digester() -> Digester:
        return Digester("sha256")


def warc_date(ms: int) -> str:
    return clock.utc_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _record_id(*parts: object) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join(map(str, parts)))}>"


class _Builder:
    def __init__(self, redactor: Redactor) -> None:
        self.out = io.BytesIO()
        self.writer = Sha256Writer(self.out, gzip=False, warc_version="1.1")
        self.redactor = redactor

    def record(
        self,
        uri: str,
        kind: str,
        body: bytes,
        headers: dict[str, str],
        http: StatusAndHeaders | None,
        content_type: str = "",
    ) -> str:
        record = self.writer.create_warc_record(
            uri,
            kind,
            payload=io.BytesIO(body),
            length=len(body),
            warc_content_type=content_type,
            warc_headers_dict=headers,
            http_headers=http,
        )
        self.writer.write_record(record)
        return str(headers["WARC-Record-ID"])

    def http_headers(self, status_line: str, headers: dict[str, str], protocol: str) -> StatusAndHeaders:
        redacted = self.redactor.headers(headers)
        return StatusAndHeaders(status_line, sorted(redacted.items()), protocol=protocol)

    def exchange(self, incident: str, exchange: Exchange) -> None:
        base = (incident, exchange.decision_id, exchange.attempt)
        request_id, response_id = _record_id(*base, "request"), _record_id(*base, "response")
        date = warc_date(exchange.at_ms)
        path = "/" + exchange.url.split("/", 3)[3] if exchange.url.count("/") >= 3 else "/"
        body = self.redactor.bytes(exchange.request_body)
        request_line = f"{exchange.method} {path} HTTP/1.1"
        request_http = self.http_headers(request_line, exchange.request_headers, "")
        request_headers = {"WARC-Record-ID": request_id, "WARC-Date": date}
        if exchange.status:
            request_headers["WARC-Concurrent-To"] = response_id
        self.record(exchange.url, "request", body, request_headers, request_http)
        if not exchange.status:  # no answer (a timeout, a connection lost): the request alone
            return
        reason = HTTP_REASONS.get(exchange.status, "Unknown")
        response_http = self.http_headers(
            f"{exchange.status} {reason}", exchange.response_headers, "HTTP/1.1"
        )
        self.record(
            exchange.url,
            "response",
            self.redactor.bytes(exchange.response_body),
            {"WARC-Record-ID": response_id, "WARC-Date": date, "WARC-Concurrent-To": request_id},
            response_http,
        )

    def attempt(self, incident: str, usage: dict[str, Any]) -> None:
        uri = f"urn:symphony:attempt:{usage['decision_id']}:{usage['attempt']}"
        body = self.redactor.text(json.dumps(usage, sort_keys=True, indent=1)).encode()
        headers = {
            "WARC-Record-ID": _record_id(incident, usage["decision_id"], usage["attempt"], "metadata"),
            "WARC-Date": warc_date(int(usage["ts"])),
        }
        self.record(uri, "metadata", body, headers, None, "application/json")

    def status_page(self, incident: str, page: StatusPage) -> None:
        headers = {
            "WARC-Record-ID": _record_id(incident, "status", page.provider),
            "WARC-Date": warc_date(page.fetched_ms),
        }
        reason = HTTP_REASONS.get(page.status, "Unknown")
        http = self.http_headers(
            f"{page.status} {reason}", {"Content-Type": "text/html; charset=utf-8"}, "HTTP/1.1"
        )
        self.record(page.url, "response", self.redactor.bytes(page.html), headers, http)

    def warcinfo(self, incident: str, at_ms: int, software: str) -> None:
        fields = f"software: {software}\r\nformat: WARC File Format 1.1\r\nincident: {incident}\r\n"
        body = self.redactor.text(fields).encode()
        headers = {
            "WARC-Record-ID": _record_id(incident, "warcinfo"),
            "WARC-Date": warc_date(at_ms),
            "WARC-Filename": WARC_NAME.rsplit("/", 1)[1],
        }
        self.record("", "warcinfo", body, headers, None, RecordBuilder.WARC_RECORDS["warcinfo"])


def build_warc(inputs: IncidentInputs, redactor: Redactor, software: str) -> bytes:
    builder = _Builder(redactor)
    incident = inputs.incident_id
    builder.warcinfo(incident, inputs.at_ms, software)
    exchanged = {(e.decision_id, e.attempt) for e in inputs.exchanges}
    for exchange in sorted(inputs.exchanges, key=lambda e: (e.at_ms, e.decision_id, e.attempt)):
        builder.exchange(incident, exchange)
    for usage in _unexchanged(inputs.usage, exchanged):
        builder.attempt(incident, usage)
    for page in sorted(inputs.status_pages, key=lambda p: p.provider):
        builder.status_page(incident, page)
    return builder.out.getvalue()


def _unexchanged(usage: Iterable[dict[str, Any]], exchanged: set[tuple[str, int]]) -> list[dict[str, Any]]:
    rows = [u for u in usage if (u["decision_id"], int(u["attempt"])) not in exchanged]
    return sorted(rows, key=lambda u: (u["decision_id"], int(u["attempt"])))
