"""The Gemini ``generateContent`` wire format, as the official ``google-genai`` SDK expects it.

``POST {base}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with ``x-goog-api-key`` (or ``?key=``):
``contents`` of ``parts`` (text, inlineData, fileData, functionCall,
functionResponse), ``systemInstruction``, ``tools[].functionDeclarations``,
``toolConfig.functionCallingConfig`` (AUTO / ANY / NONE, allowedFunctionNames),
``generationConfig`` (maxOutputTokens, temperature, topP, topK, stopSequences,
responseMimeType "application/json" with responseSchema / responseJsonSchema).
Answers carry ``candidates[].finishReason`` (STOP / MAX_TOKENS) and ``usageMetadata``;
a stream is a series of such answers, usage counts cumulative, the last with the
finish reason. Gemini sends no rate-limit headers; its 429 says when to retry in a
``google.rpc.RetryInfo`` detail.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from simulator.generation import JSON_OBJECT_SCHEMA, Completion, Prompt, Tool, ToolMode
from simulator.wire import Frame, LimitSnapshot, Quota, Reply, SimError, decode_json, validate

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
METHODS = {"generateContent": False, "streamGenerateContent": True}  # method -> streams
WORDS_PER_CHUNK = 4  # Gemini streams a few tokens per event, not one


class _Open(BaseModel):
    # The API reads camelCase and snake_case names alike, and the SDK sends both.
    model_config = ConfigDict(
        extra="allow", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )


class Blob(_Open):
    mime_type: str
    data: str


class FunctionCall(_Open):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class FunctionResponse(_Open):
    name: str
    response: dict[str, Any]


class Part(_Open):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: dict[str, Any] | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    executable_code: dict[str, Any] | None = None
    code_execution_result: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_data(self) -> Part:
        if not self.model_fields_set - {"thought", "thought_signature"}:
            raise ValueError(
                "a part needs data: text, inlineData, fileData, functionCall or functionResponse"
            )
        return self


class Content(_Open):
    role: Literal["user", "model", "function"] | None = None
    parts: list[Part] = Field(min_length=1)


class FunctionDeclaration(_Open):
    name: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class ToolSpec(_Open):
    function_declarations: list[FunctionDeclaration] | None = None


class FunctionCallingConfig(_Open):
    mode: Literal["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"] = "AUTO"
    allowed_function_names: list[str] | None = None


class ToolConfig(_Open):
    function_calling_config: FunctionCallingConfig | None = None


class GenerationConfig(_Open):
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    candidate_count: int | None = Field(default=None, ge=1, le=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None


class GenerateRequest(_Open):
    contents: list[Content] = Field(min_length=1)
    system_instruction: Content | None = None
    tools: list[ToolSpec] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None


# Gemini's quotas are per project and model; a 429 names the one it hit (google.rpc.QuotaFailure).
QUOTA_IDS = {
    "requests": "GenerateRequestsPerMinutePerProjectPerModel",
    "tokens": "GenerateContentInputTokensPerModelPerMinute",
}


def error_body(
    status: int,
    message: str,
    *,
    field: str | None = None,
    retry_after_s: int | None = None,
    quota: Quota | None = None,
) -> bytes:
    details: list[dict[str, Any]] = []
    if quota is not None:
        violation = {
            "quotaMetric": f"generativelanguage.googleapis.com/generate_content_{quota.metric}",
            "quotaId": QUOTA_IDS[quota.metric],
            "quotaDimensions": {"location": "global", "model": quota.model},
        }
        details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]})
    if retry_after_s is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_s}s"}
        )
    if field is not None:
        violation = {"field": field, "description": message}
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]})
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return orjson.dumps({"error": error})


class GeminiWire:
    stream_media_type = "text/event-stream"
    server_error_statuses: tuple[int, ...] = (500, 503)

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        key = headers.get("x-goog-api-key", "").strip() or query.get("key", "").strip()
        if not key:
            raise SimError(
                401,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        return key

    def parse(self, raw: bytes, path_params: Mapping[str, str], query: Mapping[str, str]) -> Prompt:
        model, stream = parse_target(path_params["target"])
        if stream and query.get("alt") != "sse":
            raise SimError(400, "The simulator streams only with alt=sse.", param="alt")
        request: GenerateRequest = validate(GenerateRequest, decode_json(raw))
        return _prompt(request, model, stream)

    def body(self, reply: Reply) -> bytes:
        completion = reply.completion
        return orjson.dumps(
            _answer(
                reply,
                _parts(completion),
                completion.completion_tokens,
                FINISH_REASONS[completion.finish_reason],
            )
        )

    def frames(self, reply: Reply) -> Iterator[Frame]:
        return stream_frames(reply)

    def error(self, error: SimError) -> bytes:
        return error_body(
            error.status,
            error.message,
            field=error.param,
            retry_after_s=error.retry_after_s,
            quota=error.quota,
        )

    def limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        return {}

    def models_body(self, models: list[str], created_ms: int) -> bytes:
        methods = list(METHODS)
        data = [
            {"name": f"models/{model}", "displayName": model, "supportedGenerationMethods": methods}
            for model in models
        ]
        return orjson.dumps({"models": data})


def parse_target(target: str) -> tuple[str, bool]:
    """``gemini-2.5-flash:streamGenerateContent`` -> (model, whether it streams)."""
    model, _, method = target.partition(":")
    if method not in METHODS:
        raise SimError(404, f"Method {method or '(none)'!r} is not found for models/{model}.")
    return model, METHODS[method]


def _part_text(parts: list[Part]) -> str:
    return "".join(part.text for part in parts if part.text is not None)


def _prompt(request: GenerateRequest, model: str, stream: bool) -> Prompt:
    declarations = [d for tool in request.tools or () for d in tool.function_declarations or ()]
    tools = tuple(Tool(d.name, d.parameters_json_schema or d.parameters or {}) for d in declarations)
    mode, forced = _tool_mode(request.tool_config, tools)
    config = request.generation_config or GenerationConfig()
    system = [_part_text(request.system_instruction.parts)] if request.system_instruction else []
    users = [content for content in request.contents if content.role in (None, "user")]
    last = request.contents[-1]
    return Prompt(
        model=model,
        texts=tuple(system + [_part_text(content.parts) for content in request.contents]),
        last_user_text=_part_text(users[-1].parts) if users else "",
        after_tool_result=any(part.function_response is not None for part in last.parts),
        tools=tools,
        tool_mode=mode,
        forced_tool=forced,
        json_schema=_json_schema(config),
        stop=tuple(config.stop_sequences or ()),
        max_tokens=config.max_output_tokens,
        stream=stream,
    )


def _tool_mode(config: ToolConfig | None, tools: tuple[Tool, ...]) -> tuple[ToolMode, str | None]:
    calling = config.function_calling_config if config else None
    if calling is None or calling.mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return "auto", None
    if calling.mode == "NONE":
        return "none", None
    allowed = calling.allowed_function_names or []
    unknown = set(allowed) - {tool.name for tool in tools}
    if unknown:
        field = "toolConfig.functionCallingConfig.allowedFunctionNames"
        raise SimError(400, f"{field}: no function declared as {sorted(unknown)}", param=field)
    return "required", allowed[0] if len(allowed) == 1 else None


def _json_schema(config: GenerationConfig) -> Mapping[str, Any] | None:
    if config.response_mime_type != "application/json":
        if config.response_schema is not None or config.response_json_schema is not None:
            field = "generationConfig.responseMimeType"
            raise SimError(400, f"{field} must be application/json with a response schema", param=field)
        return None
    return config.response_json_schema or config.response_schema or JSON_OBJECT_SCHEMA


def _parts(completion: Completion) -> list[dict[str, Any]]:
    if completion.tool_calls:
        return [
            {"functionCall": {"name": call.name, "args": call.arguments}} for call in completion.tool_calls
        ]
    return [{"text": completion.content}]


def _answer(
    reply: Reply, parts: list[dict[str, Any]], output_tokens: int, finish: str | None
) -> dict[str, Any]:
    """One ``GenerateContentResponse``; a stream sends several, ``output_tokens`` so far."""
    prompt_tokens = reply.completion.prompt_tokens
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": reply.model,
        "responseId": reply.id,
    }


def _event(answer: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(answer) + b"\r\n\r\n"


def stream_frames(reply: Reply) -> Iterator[Frame]:
    """The answer in events of ``WORDS_PER_CHUNK`` words; function calls come whole, in the last."""
    completion = reply.completion
    finish = FINISH_REASONS[completion.finish_reason]
    if completion.tool_calls:
        yield (
            _event(_answer(reply, _parts(completion), completion.completion_tokens, finish)),
            (completion.completion_tokens),
        )
        return
    words = completion.words
    starts = range(0, len(words), WORDS_PER_CHUNK) if words else range(1)
    for start in starts:
        chunk = words[start : start + WORDS_PER_CHUNK]
        text = (" " if start else "") + " ".join(chunk)
        done = start + WORDS_PER_CHUNK >= len(words)
        answer = _answer(reply, [{"text": text}], start + len(chunk), finish if done else None)
        yield _event(answer), len(chunk)
