"""The inbound APIs, one per module: ``openai_api`` (chat completions, models),
``messages_api`` (Anthropic's messages, translated by ``messages_translate`` and
streamed by ``messages_stream``), ``route_execute`` (the native API) and ``feedback``;
``model_names`` reads the model a client names."""
