"""The data plane: an OpenAI-compatible proxy that routes each request to an arm.

Public surface: ``create_app(settings)`` and ``run_proxy(settings)``. The proxy
never imports ``dataflows`` or ``sinks``: it talks to the control plane only
through Redis.
"""

from proxy.app import create_app, run_proxy

__all__ = ["create_app", "run_proxy"]
