"""An incident's inputs with the redaction corpus planted everywhere a secret could arrive."""

from __future__ import annotations

import json

from simulator.faults import FaultSpec
from simulator.status_page import render
from sinks.evidence.inputs import Exchange, IncidentInputs, StatusPage
from tests.redaction_corpus import OPERATOR_PATTERN, app_key, held_secrets, planted_text

AT_MS = 1_764_614_400_000  # 2025-12-01T18:40:00Z
DECISION_ID = "01KBEVIDENCE0000000000000A"


def planted_inputs() -> IncidentInputs:
    secret_text = planted_text()
    key, _ = app_key()
    held = held_secrets()
    request = json.dumps({"model": "grok-3-mini", "messages": [{"role": "user", "content": secret_text}]})
    response = json.dumps(
        {"error": {"message": f"Incorrect API key provided: {held['venice_key']}. {secret_text}"}}
    )
    exchanges = [
        Exchange(
            DECISION_ID,
            1,
            AT_MS + 10,
            "POST",
            "http://127.0.0.1:8701/grok/v1/chat/completions",
            {
                "Authorization": f"Bearer {held['venice_key']}",
                "Content-Type": "application/json",
                "X-Note": secret_text.splitlines()[0],
            },
            request.encode(),
            504,
            {"x-ratelimit-remaining-requests": "12", "x-debug": secret_text.splitlines()[5]},
            response.encode(),
        ),
        Exchange(
            DECISION_ID,
            2,
            AT_MS + 6200,
            "POST",
            "http://127.0.0.1:8701/openai/v1/chat/completions",
            {"Authorization": f"Bearer {key}"},
            request.encode(),
            200,
            {"x-ratelimit-remaining-tokens": "90000"},
            b'{"choices":[{"message":{"content":"ok"}}]}',
        ),
    ]
    page = render("grok", FaultSpec(slow_ttft_ms=6000)).replace(
        "</main>", f"<p>Contact {secret_text}</p></main>"
    )
    decision = {
        "decision_id": DECISION_ID,
        "request_id": "req_1",
        "app": "billing",
        "task": "chat",
        "ts": AT_MS,
        "candidates": ["grok/grok-3-mini", "openai/gpt-4o-mini"],
        "probabilities": [0.7, 0.3],
        "provider": "grok",
        "model": "grok-3-mini",
        "policy": "champion",
        "policy_version": "v1",
        "propensity": 0.7,
        "quota_remaining": {"grok/grok-3-mini": 0.42},
        "fallbacks": ["grok/grok-3-mini"],
        "fallback_statuses": ["timeout"],
        "served_by": "openai/gpt-4o-mini",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    usage = [
        {
            "decision_id": DECISION_ID,
            "attempt": 1,
            "provider": "grok",
            "model": "grok-3-mini",
            "status": "timeout",
            "ttfb_ms": 0.0,
            "latency_ms": 6000.0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "rate_limit": {"x-ratelimit-remaining-requests": "12"},
            "fallback_from": "",
            "ts": AT_MS + 6010,
        },
        {
            "decision_id": DECISION_ID,
            "attempt": 2,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "status": "ok",
            "ttfb_ms": 300.0,
            "latency_ms": 900.0,
            "input_tokens": 20,
            "output_tokens": 5,
            "cost_usd": 0.000006,
            "rate_limit": {},
            "fallback_from": "grok/grok-3-mini",
            "ts": AT_MS + 7100,
        },
        {
            "decision_id": DECISION_ID,
            "attempt": 3,
            "provider": "openai",
            "model": "gpt-4o",
            "status": "5xx",
            "ttfb_ms": 0.0,
            "latency_ms": 12.0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "rate_limit": {"note": secret_text.splitlines()[7]},
            "fallback_from": "",
            "ts": AT_MS + 7200,
        },
    ]
    alert = {
        "alert_id": f"SymphonyLatencyP95:grok/grok-3-mini:{AT_MS}",
        "summary": "p95 over",
        "status": "firing",
    }
    return IncidentInputs(
        incident_id=alert["alert_id"],
        at_ms=AT_MS + 60_000,
        decision=decision,
        usage=usage,
        exchanges=exchanges,
        status_pages=[
            StatusPage("grok", "http://127.0.0.1:8701/grok/status", AT_MS + 60_000, 200, page.encode())
        ],
        alert=alert,
        trace_url="http://tempo/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        quota={"grok": {"minute_requests_left": 3}},
        trigger="slo_alert",
    )


def corpus_redactor():  # type: ignore[no-untyped-def]
    from symphony.redaction import Redactor

    return Redactor(secrets=held_secrets().values(), operator_patterns=[OPERATOR_PATTERN])
