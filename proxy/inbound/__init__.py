"""Inbound API formats other than the canonical one, translated at the proxy's edge.

``anthropic_messages``: Anthropic's ``POST /v1/messages`` (request, answer, errors);
``anthropic_stream``: its server-sent events, from canonical chunk events.
"""
