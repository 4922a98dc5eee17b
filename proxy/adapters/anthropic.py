"""Anthropic's Messages API: canonical requests to ``POST /v1/messages`` and its answers back.

The mapping, both ways:

- ``system`` and ``developer`` messages -> ``system`` text blocks;
- user text and ``image_url`` parts -> text and image blocks (a ``data:`` URL becomes a
  base64 source, an http(s) URL a url source);
- assistant ``tool_calls`` -> ``tool_use`` blocks; ``tool`` messages -> ``tool_result``
  blocks in a user turn (consecutive turns of one role are merged, as Anthropic wants);
- ``tools``/``tool_choice``/``parallel_tool_calls`` -> ``tools`` (``input_schema``) and
  ``tool_choice`` (auto, none, required -> any, a named function -> tool);
- temperature, top_p and top_k as they are; ``stop`` -> ``stop_sequences``;
  ``max_completion_tokens``/``max_tokens`` -> ``max_tokens`` (required by Anthropic:
  ``DEFAULT_MAX_TOKENS`` when the client sets none);
- ``response_format`` json_object/json_schema is *emulated*: Anthropic has no JSON mode,
  so the adapter offers one tool whose ``input_schema`` is the wanted schema and forces
  it; the tool's input comes back as the message's JSON text, finish reason ``stop``.

What has no equivalent (``n`` > 1, logprobs, penalties, ``logit_bias``, ``seed``, any
parameter this module does not know, temperature above Anthropic's 1.0) is refused
with ``UnsupportedFeature``. The stream translator is in ``anthropic_stream``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.adapters import canonical
from proxy.adapters.anthropic_stream import JSON_TOOL, AnthropicStream, finish_reason, input_tokens
from proxy.adapters.base import (
    Adapter,
    Answer,
    UnsupportedFeature,
    UpstreamFailure,
    UpstreamRequest,
    headers_show_limit_used_up,
)
from proxy.adapters.failures import (
    RETRY_AFTER,
    MalformedAnswer,
    attempt_status,
    describe,
    error_body,
    error_type,
    json_object,
    retry_after_s,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MAX_TEMPERATURE = 1.0
RATE_LIMIT_PREFIX = "anthropic-ratelimit-"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Models that refuse a request setting both temperature and top_p.
ONE_SAMPLING_PARAMETER = frozenset({"claude-sonnet-4-5"})


class AnthropicAdapter(Adapter):
    mapped_params = canonical.MAPPED_PARAMS | {"temperature", "top_p", "top_k"}
    refused_params = (
        "logprobs",
        "top_logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
    )
    never_capabilities = frozenset({"multiple_choices"})

    def _provider_request(self, body: dict[str, Any], model: str, *, stream: bool) -> UpstreamRequest:
        system, messages = self._messages(body.get("messages") or [])
        out: dict[str, Any] = {
            "model": model,
            "max_tokens": canonical.token_limit(body) or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            out["system"] = system
        out.update(self._sampling(body, model))
        out.update(self._tools(body))
        if stream:
            out["stream"] = True
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "x-api-key": self._api_key,
            "anthropic-version": API_VERSION,
        }
        return UpstreamRequest(f"{self.base_url}/messages", headers, orjson.dumps(out))

    # --- request parts -------------------------------------------------------------------------

    def _messages(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(system blocks, turns): each canonical message becomes blocks in a turn of its role."""
        system = [{"type": "text", "text": text} for text in canonical.system_texts(messages)]
        turns = (
            self._turn(message, index)
            for index, message in enumerate(messages)
            if message.get("role") not in canonical.SYSTEM_ROLES
        )
        return system, canonical.merge_turns(turns, "content")

    def _turn(self, message: Mapping[str, Any], index: int) -> tuple[str, list[dict[str, Any]]]:
        """One canonical message as (Anthropic role, blocks)."""
        role = message.get("role")
        if role == "user":
            return "user", self._user_blocks(message.get("content"), index)
        if role == "assistant":
            return "assistant", self._assistant_blocks(message)
        if role == "tool":
            return "user", [self._tool_result(message)]
        raise UnsupportedFeature(self.provider, f"messages with role {role!r}", f"messages.{index}.role")

    def _user_blocks(self, content: object, index: int) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        blocks: list[dict[str, Any]] = []
        for part in content if isinstance(content, list) else []:
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    blocks.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                blocks.append(self._image_block(canonical.image_url(part), index))
            else:
                raise UnsupportedFeature(self.provider, f"{kind} content parts", f"messages.{index}.content")
        return blocks

    def _image_block(self, url: str, index: int) -> dict[str, Any]:
        image = canonical.inline_image(url)
        if image is not None:
            if image.mime_type not in IMAGE_TYPES:
                raise UnsupportedFeature(
                    self.provider, f"{image.mime_type} images", f"messages.{index}.content"
                )
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": image.mime_type, "data": image.data},
            }
        if url.startswith(("https://", "http://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
        raise UnsupportedFeature(self.provider, "image URLs that are neither data: nor http(s):", "messages")

    def _assistant_blocks(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        text = canonical.text_of(message.get("content"))
        if text:
            blocks.append({"type": "text", "text": text})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": canonical.tool_arguments(self.provider, call),
                }
            )
        return blocks

    def _tool_result(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "type": "tool_result",
            "tool_use_id": message.get("tool_call_id"),
            "content": canonical.text_of(message.get("content")),
        }

    def _sampling(self, body: Mapping[str, Any], model: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        temperature, top_p = body.get("temperature"), body.get("top_p")
        if temperature is not None:
            if temperature > MAX_TEMPERATURE:
                raise UnsupportedFeature(self.provider, "a temperature above 1.0", "temperature")
            out["temperature"] = temperature
        if top_p is not None:
            out["top_p"] = top_p
        if body.get("top_k") is not None:
            out["top_k"] = body["top_k"]
        if temperature is not None and top_p is not None and model in ONE_SAMPLING_PARAMETER:
            raise UnsupportedFeature(self.provider, f"setting both temperature and top_p on {model}", "top_p")
        stop = canonical.stop_sequences(body)
        if stop:
            out["stop_sequences"] = stop
        return out

    def _tools(self, body: Mapping[str, Any]) -> dict[str, Any]:
        functions = canonical.function_tools(self.provider, body)
        json_tool = self._json_tool(body.get("response_format"))
        if json_tool is not None:
            if functions:
                raise UnsupportedFeature(
                    self.provider, "response_format together with tools", "response_format"
                )
            return {"tools": [json_tool], "tool_choice": {"type": "tool", "name": JSON_TOOL}}
        if not functions:
            return {}
        tools = [
            {
                "name": function.get("name"),
                **({"description": function["description"]} if function.get("description") else {}),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
            for function in functions
        ]
        return {"tools": tools, **self._tool_choice(body)}

    def _tool_choice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        choice = body.get("tool_choice")
        if choice is None or choice == "auto":
            mapped: dict[str, Any] = {"type": "auto"}
        elif choice == "none":
            return {"tool_choice": {"type": "none"}}
        elif choice == "required":
            mapped = {"type": "any"}
        elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            mapped = {"type": "tool", "name": choice["function"].get("name")}
        else:
            raise UnsupportedFeature(self.provider, f"tool_choice {choice!r}", "tool_choice")
        if body.get("parallel_tool_calls") is False:
            mapped["disable_parallel_tool_use"] = True
        elif choice is None:
            return {}  # Anthropic's default is OpenAI's: auto, parallel calls allowed
        return {"tool_choice": mapped}

    def _json_tool(self, response_format: object) -> dict[str, Any] | None:
        """The forced tool that emulates JSON mode, or None for plain text answers."""
        if response_format is None:
            return None
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            schema: object = {"type": "object"}
            description = "Give your whole answer as one JSON object, through this tool."
        elif kind == "json_schema" and isinstance(response_format, dict):
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") or {"type": "object"}
            description = (
                spec.get("description") or f"Give your whole answer through this tool ({spec.get('name')})."
            )
        else:
            raise UnsupportedFeature(self.provider, f"response_format {kind!r}", "response_format")
        if not (isinstance(schema, dict) and schema.get("type") == "object"):
            raise UnsupportedFeature(
                self.provider, "a JSON schema whose root is not an object", "response_format"
            )
        return {"name": JSON_TOOL, "description": description, "input_schema": schema}

    # --- answers ---------------------------------------------------------------------------------

    def response(self, body: bytes) -> Answer:
        message = json_object(body)
        if message is None or not isinstance(message.get("content"), list):
            raise MalformedAnswer(f"{self.provider} answered 2xx without a message: {describe(body, 200)}")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in message["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
                texts.append(canonical.json_arguments(block.get("input")))
            elif block.get("type") == "tool_use":
                arguments = canonical.json_arguments(block.get("input"))
                calls.append(canonical.tool_call(str(block.get("id")), str(block.get("name")), arguments))
        usage = message["usage"] if isinstance(message.get("usage"), dict) else {}
        prompt, completion = input_tokens(usage), _int(usage.get("output_tokens"))
        out = canonical.completion_body(
            str(message.get("id", "")),
            str(message.get("model", "")),
            text="".join(texts) if texts else None,
            tool_calls=calls,
            finish_reason=finish_reason(message.get("stop_reason"), tools_called=bool(calls)),
            input_tokens=prompt,
            output_tokens=completion,
        )
        return Answer(out, prompt, completion)

    def stream(self, model: str, *, include_usage: bool) -> AnthropicStream:
        return AnthropicStream(model, include_usage=include_usage)

    def failure(self, http_status: int, headers: Mapping[str, str], body: bytes) -> UpstreamFailure:
        answer = json_object(body)
        error = answer.get("error") if answer is not None else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message, code = error["message"], error.get("type")
        else:
            message, code = describe(body, http_status), None
        canonical_body = error_body(
            message, error_type(http_status), code=code if isinstance(code, str) else None
        )
        rate_limit = self.rate_limits(headers)
        return UpstreamFailure(
            attempt_status(http_status),
            http_status,
            retry_after_s(headers),
            canonical_body,
            rate_limit,
            model_limit_used_up=http_status == 429 and headers_show_limit_used_up(rate_limit),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {
            name.lower(): value
            for name, value in headers.items()
            if name.lower().startswith(RATE_LIMIT_PREFIX) or name.lower() == RETRY_AFTER
        }


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
