"""One routed request as the proxy logs it: its decision, its one attempt's usage, and its feedback."""

from __future__ import annotations

from symphony.events import Decision, Feedback, Usage, new_id


def logged_request(
    ts: int,
    arm: str,
    candidates: list[str],
    score: float | None,
    *,
    served: bool = True,
    policy: str = "champion",
    latency_ms: float = 200.0,
    cost_usd: float = 0.0001,
    prompt_tokens: float = 10.0,
) -> list[Decision | Usage | Feedback]:
    """``arm`` drawn among ``candidates`` (uniformly) at ``ts``; no feedback when ``score`` is None."""
    decision_id = new_id(ts)
    provider, model = arm.split("/")
    share = 1.0 / len(candidates)
    events: list[Decision | Usage | Feedback] = [
        Decision(
            event_id=new_id(ts),
            ts=ts,
            decision_id=decision_id,
            request_id="r",
            app="tests",
            task="chat",
            candidates=candidates,
            probabilities=[share] * len(candidates),
            provider=provider,
            model=model,
            policy=policy,
            policy_version="v",
            propensity=share,
            served_by=arm if served else "",
            features={"messages": 1.0, "prompt_tokens": prompt_tokens},
        ),
        Usage(
            event_id=new_id(ts + 1),
            ts=ts + 1,
            decision_id=decision_id,
            app="tests",
            provider=provider,
            model=model,
            attempt=1,
            status="ok" if served else "5xx",
            ttfb_ms=10.0,
            latency_ms=latency_ms,
            input_tokens=10,
            output_tokens=10,
            cost_usd=cost_usd,
        ),
    ]
    if score is not None:
        events.append(
            Feedback(event_id=new_id(ts + 2), ts=ts + 2, decision_id=decision_id, score=score, source="app")
        )
    return events
