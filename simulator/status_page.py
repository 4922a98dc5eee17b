"""Each provider's status page, as the simulator's twin of ``status.openai.com`` and the like.

``GET /{provider}/status`` answers an HTML page in the shape public status pages share (a
headline, one row per component, the incidents in progress) built from the faults set on
that provider now: slow first tokens read "Degraded performance", errors and hangs
"Partial outage". Evidence bundles snapshot it (``sinks.evidence``) as they would the real one.
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from simulator.faults import FaultSpec
from simulator.serving import Endpoint, Simulator

OPERATIONAL = "Operational"
DEGRADED = "Degraded performance"
OUTAGE = "Partial outage"


def component_status(spec: FaultSpec) -> str:
    if spec.any_share:
        return OUTAGE
    return DEGRADED if spec.slow_ttft_ms > 0 else OPERATIONAL


def incidents(provider: str, spec: FaultSpec) -> list[str]:
    found = []
    if spec.slow_ttft_ms > 0:
        found.append(f"Elevated latency on {provider} API: first tokens up to {spec.slow_ttft_ms} ms late.")
    if spec.rate_5xx > 0:
        found.append(f"Increased error rates on {provider} API ({spec.rate_5xx:.0%} of requests).")
    if spec.rate_429 > 0:
        found.append(f"Requests to {provider} API rate limited ({spec.rate_429:.0%} of requests).")
    if spec.hang_rate > 0:
        found.append(f"Some requests to {provider} API are not answered ({spec.hang_rate:.0%}).")
    return found


def render(provider: str, spec: FaultSpec) -> str:
    status = component_status(spec)
    headline = "All Systems Operational" if status == OPERATIONAL else status
    name = escape(provider)
    rows = "".join(
        f"<tr><td>{component}</td><td>{escape(status)}</td></tr>" for component in ("API", "Chat Completions")
    )
    items = "".join(f"<li><p>{escape(text)}</p></li>" for text in incidents(provider, spec))
    current = f"<section><h2>Current incidents</h2><ul>{items}</ul></section>" if items else ""
    return (
        f"<!DOCTYPE html><html><head><title>{name} status</title></head><body>"
        f"<header><nav><a href='/'>{name}</a> | <a href='/history'>History</a></nav></header>"
        f"<main><article><h1>{name} status: {escape(headline)}</h1>"
        f"<p>Status of the {name} API as its operators report it.</p>"
        f"<table><tr><th>Component</th><th>Status</th></tr>{rows}</table>{current}</article></main>"
        f"<footer>Subscribe to updates</footer></body></html>"
    )


def status_endpoint(sim: Simulator, provider: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(render(provider, sim.faults.spec(provider)))

    return endpoint
