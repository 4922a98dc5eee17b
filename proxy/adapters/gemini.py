"""Gemini's generateContent API: canonical requests to ``models/{model}:generateContent`` and back.

The mapping, both ways:

- ``system``/``developer`` messages -> ``systemInstruction``; user -> ``user`` turns,
  assistant -> ``model`` turns (consecutive turns of one role merged);
- text parts -> ``text``; ``data:`` image URLs -> ``inlineData``. Gemini reads no remote
  URLs in a request, so an http(s) image URL is refused rather than fetched by the proxy;
- assistant ``tool_calls`` -> ``functionCall`` parts; ``tool`` messages ->
  ``functionResponse`` parts, whose function name is looked up from the earlier call
  with that ``tool_call_id`` (a JSON-object result goes as is, other text as
  ``{"result": text}``);
- ``tools`` -> ``functionDeclarations``; ``tool_choice`` -> ``functionCallingConfig``
  (auto -> AUTO, none -> NONE, required -> ANY, a named function -> ANY limited to it);
- ``max_completion_tokens``/``max_tokens``, temperature, top_p, top_k, stop, seed and the
  penalties -> ``generationConfig``; ``response_format`` -> ``responseMimeType``
  ``application/json`` plus ``responseJsonSchema`` for json_schema.

What has no equivalent (``n`` > 1, logprobs, ``logit_bias``, ``parallel_tool_calls:
false``, unknown parameters) is refused with ``UnsupportedFeature``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from proxy.adapters import canonical
from proxy.adapters.base import Adapter, Answer, UnsupportedFeature, UpstreamFailure, UpstreamRequest
from proxy.adapters.failures import (
    RETRY_AFTER,
    MalformedAnswer,
    attempt_status,
    describe,
    error_body,
    error_type,
    json_object,
    parse_duration,
    retry_after_s,
)
from proxy.adapters.gemini_stream import GeminiStream, answer_parts, call_id, finish_reason, usage_tokens

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


class GeminiAdapter(Adapter):
    mapped_params = canonical.MAPPED_PARAMS | frozenset(_GENERATION)
    refused_params = ("logprobs", "top_logprobs", "logit_bias")
    never_capabilities = frozenset({"multiple_choices"})

    def _provider_request(self, body: dict[str, Any], model: str, *, stream: bool) -> UpstreamRequest:
        if body.get("parallel_tool_calls") is False:
            raise UnsupportedFeature(self.provider, "parallel_tool_calls: false", "parallel_tool_calls")
        system, contents = self._contents(body.get("messages") or [])
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": system}
        out.update(self._tools(body))
        config = self._generation_config(body)
        if config:
            out["generationConfig"] = config
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{self.base_url}/models/{quote(model, safe='.-_')}:{method}"
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "x-goog-api-key": self._api_key,
        }
        return UpstreamRequest(url, headers, orjson.dumps(out))

    # --- request parts -------------------------------------------------------------------------

    def _contents(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(system parts, contents), looking up each tool result's function name by its call id."""
        names: dict[str, str] = {}  # filled in order, as the turns are read
        system = [{"text": text} for text in canonical.system_texts(messages)]
        contents = (
            self._content(message, index, names)
            for index, message in enumerate(messages)
            if message.get("role") not in canonical.SYSTEM_ROLES
        )
        return system, canonical.merge_turns(contents, "parts")

    def _content(
        self, message: Mapping[str, Any], index: int, names: dict[str, str]
    ) -> tuple[str, list[dict[str, Any]]]:
        """One canonical message as (Gemini role, parts)."""
        role = message.get("role")
        if role == "user":
            return "user", self._user_parts(message.get("content"), index)
        if role == "assistant":
            return "model", self._model_parts(message, names)
        if role == "tool":
            return "user", [self._function_response(message, names, index)]
        raise UnsupportedFeature(self.provider, f"messages with role {role!r}", f"messages.{index}.role")

    def _user_parts(self, content: object, index: int) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"text": content}] if content else []
        parts: list[dict[str, Any]] = []
        for part in content if isinstance(content, list) else []:
            kind = part.get("type")
            if kind == "text":
                if part.get("text"):
                    parts.append({"text": part["text"]})
            elif kind == "image_url":
                image = canonical.inline_image(canonical.image_url(part))
                if image is None:
                    raise UnsupportedFeature(
                        self.provider, "image URLs other than data: URLs", f"messages.{index}.content"
                    )
                parts.append({"inlineData": {"mimeType": image.mime_type, "data": image.data}})
            else:
                raise UnsupportedFeature(self.provider, f"{kind} content parts", f"messages.{index}.content")
        return parts

    def _model_parts(self, message: Mapping[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        text = canonical.text_of(message.get("content"))
        if text:
            parts.append({"text": text})
        for call in message.get("tool_calls") or []:
            name = str((call.get("function") or {}).get("name"))
            names[str(call.get("id"))] = name
            parts.append(
                {"functionCall": {"name": name, "args": canonical.tool_arguments(self.provider, call)}}
            )
        return parts

    def _function_response(
        self, message: Mapping[str, Any], names: Mapping[str, str], index: int
    ) -> dict[str, Any]:
        call = str(message.get("tool_call_id"))
        if call not in names:
            raise UnsupportedFeature(
                self.provider,
                f"a tool result for an unknown tool call {call!r}",
                f"messages.{index}.tool_call_id",
            )
        text = canonical.text_of(message.get("content"))
        result = json_object(text.encode())
        return {
            "functionResponse": {
                "name": names[call],
                "response": result if result is not None else {"result": text},
            }
        }

    def _tools(self, body: Mapping[str, Any]) -> dict[str, Any]:
        functions = canonical.function_tools(self.provider, body)
        if not functions:
            return {}
        declarations = [
            {
                "name": function.get("name"),
                **({"description": function["description"]} if function.get("description") else {}),
                **({"parametersJsonSchema": function["parameters"]} if function.get("parameters") else {}),
            }
            for function in functions
        ]
        out: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
        choice = body.get("tool_choice")
        if isinstance(choice, str) and choice in _MODES:
            out["toolConfig"] = {"functionCallingConfig": {"mode": _MODES[choice]}}
        elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            config = {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
            out["toolConfig"] = {"functionCallingConfig": config}
        elif choice is not None:
            raise UnsupportedFeature(self.provider, f"tool_choice {choice!r}", "tool_choice")
        return out

    def _generation_config(self, body: Mapping[str, Any]) -> dict[str, Any]:
        config = {name: body[key] for key, name in _GENERATION.items() if body.get(key) is not None}
        limit = canonical.token_limit(body)
        if limit is not None:
            config["maxOutputTokens"] = limit
        stop = canonical.stop_sequences(body)
        if stop:
            config["stopSequences"] = stop
        config.update(self._response_format(body.get("response_format")))
        return config

    def _response_format(self, response_format: object) -> dict[str, Any]:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if response_format is None or kind == "text":
            return {}
        if kind == "json_object":
            return {"responseMimeType": "application/json"}
        if kind == "json_schema" and isinstance(response_format, dict):
            schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
            return {"responseMimeType": "application/json", "responseJsonSchema": schema}
        raise UnsupportedFeature(self.provider, f"response_format {kind!r}", "response_format")

    # --- answers ---------------------------------------------------------------------------------

    def response(self, body: bytes) -> Answer:
        response = json_object(body)
        if response is None or not ("candidates" in response or "promptFeedback" in response):
            raise MalformedAnswer(f"{self.provider} answered 2xx without candidates: {describe(body, 200)}")
        parts, reason = answer_parts(response)
        texts = [part["text"] for part in parts if isinstance(part.get("text"), str)]
        calls = [
            canonical.tool_call(
                call_id(call), str(call.get("name")), canonical.json_arguments(call.get("args"))
            )
            for part in parts
            if isinstance(call := part.get("functionCall"), dict)
        ]
        prompt, completion = usage_tokens(response.get("usageMetadata"))
        out = canonical.completion_body(
            str(response.get("responseId") or f"chatcmpl-{secrets.token_hex(12)}"),
            str(response.get("modelVersion", "")),
            text="".join(texts) if texts else None,
            tool_calls=calls,
            finish_reason=finish_reason(reason, tools_called=bool(calls)),
            input_tokens=prompt,
            output_tokens=completion,
        )
        return Answer(out, prompt, completion)

    def stream(self, model: str, *, include_usage: bool) -> GeminiStream:
        return GeminiStream(model, include_usage=include_usage)

    def failure(self, http_status: int, headers: Mapping[str, str], body: bytes) -> UpstreamFailure:
        answer = json_object(body)
        error = answer.get("error") if answer is not None else None
        if not isinstance(error, dict):
            error = {}
        message = error["message"] if isinstance(error.get("message"), str) else describe(body, http_status)
        status = error.get("status") if isinstance(error.get("status"), str) else None
        details = error.get("details")
        retry = retry_delay_s(details)
        return UpstreamFailure(
            attempt_status(http_status),
            http_status,
            retry if retry is not None else retry_after_s(headers),
            error_body(message, error_type(http_status), code=status),
            self.rate_limits(headers),
            model_limit_used_up=http_status == 429 and names_a_model_quota(details),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Gemini sends no rate-limit headers; only ``retry-after`` if a proxy in between adds one."""
        return {name.lower(): value for name, value in headers.items() if name.lower() == RETRY_AFTER}


def names_a_model_quota(details: object) -> bool:
    """Whether a ``google.rpc.QuotaFailure`` detail names a quota of one model (Gemini's per-minute
    quotas are per project and model: ``quotaDimensions.model``)."""
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == QUOTA_FAILURE:
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else []:
                dimensions = violation.get("quotaDimensions") if isinstance(violation, dict) else None
                if isinstance(dimensions, dict) and isinstance(dimensions.get("model"), str):
                    return True
    return False


def retry_delay_s(details: object) -> float | None:
    """The ``retryDelay`` (e.g. ``"7s"``) of a ``google.rpc.RetryInfo`` error detail."""
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO:
            delay = detail.get("retryDelay")
            return parse_duration(delay) if isinstance(delay, str) else None
    return None
