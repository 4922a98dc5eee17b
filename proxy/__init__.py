"""The data plane: a routing proxy with OpenAI-, Anthropic-compatible and native APIs.

Public surface: ``create_app(settings)`` and ``run_proxy(settings)``. A request
flows: inbound API (``openai_api``, ``messages_api``, ``route_execute``) -> ``Job``
-> ``candidates`` -> ``routing`` (champion/challenger ``policy``) -> ``fallback``
(attempts over ``adapters``, ``health``, ``upstream``) -> the answer in the inbound
format. The proxy never imports ``dataflows`` or ``sinks``: it talks to the control
plane only through Redis (events out, challenger policy in).
"""

from proxy.app import create_app, run_proxy

__all__ = ["create_app", "run_proxy"]
