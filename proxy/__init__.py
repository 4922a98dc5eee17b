"""The data plane: a routing proxy with OpenAI-, Anthropic-compatible and native APIs.

Public surface: ``create_app(settings)`` and ``run_proxy(settings)``. A request
flows: ``edge`` (limits, auth, scrubbing) -> inbound API (``api.openai_api``,
``api.messages_api``, ``api.route_execute``) -> ``RoutedRequest`` -> ``routing.candidates`` ->
``routing.router`` (champion/challenger, ``symphony.serving``) -> ``attempts.attempt_loop``
(attempts over ``adapters``, ``routing.health``, ``attempts.quota_gate``,
``attempts.upstream``) -> the answer in the inbound format. The proxy never imports
``dataflows`` or ``sinks``: it talks to the control plane only through Redis (events
out, challenger policy in).
"""

from proxy.app import create_app, run_proxy

__all__ = ["create_app", "run_proxy"]
