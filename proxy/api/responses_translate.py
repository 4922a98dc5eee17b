"""OpenAI Responses requests to the canonical form, and canonical answers back to Responses objects.

Stateless: the conversation comes whole in ``input`` (a string, or message, ``function_call``
and ``function_call_output`` items); ``previous_response_id``, built-in tools, ``reasoning`` and
``background`` are refused with a 400 that names the field, as is any field not listed here.
``instructions`` becomes the first (system) message, function ``tools`` and ``tool_choice``
their chat-completions forms, ``text.format`` the ``response_format`` (structured output), and
``max_output_tokens`` ``max_tokens``. ``store`` and ``metadata`` are accepted: nothing is stored
(the answer says ``store: false``), and the metadata is echoed.

A canonical ``chat.completion`` becomes a ``response``: its text one ``message`` item with an
``output_text`` part, each tool call a ``function_call`` item; a ``length`` finish makes it
``incomplete`` (``max_output_tokens``).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from proxy import errors
from proxy.schemas import ClosedModel, StrictModel

Role = Literal["user", "assistant", "system", "developer"]


class FunctionTool(StrictModel):
    type: str
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextOptions(StrictModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(ClosedModel):
    model: str = Field(default="auto", min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stream: bool = False
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["disabled", "auto"] | None = None
    include: list[str] | None = Field(default=None, max_length=0)
    previous_response_id: None = None  # refused: stateless (see _refuse_state)
    background: Literal[False] | None = None
    reasoning: None = None

    def to_canonical(self) -> dict[str, Any]:
        """The canonical (OpenAI chat-completions) request for this one."""
        messages: list[dict[str, Any]] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            messages.append({"role": "user", "content": self.input})
        else:
            for index, item in enumerate(self.input):
                _add_item(messages, item, index)
        if not messages:
            raise errors.ApiError(400, "input: give at least one message.", param="input")
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        optional = {
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "parallel_tool_calls": self.parallel_tool_calls,
            "user": self.user or self.safety_identifier,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if self.tools:
            body["tools"] = [_tool(tool, index) for index, tool in enumerate(self.tools)]
        if self.tool_choice is not None:
            body["tool_choice"] = _tool_choice(self.tool_choice)
        format_ = self.text.format if self.text is not None else None
        if format_ is not None and format_.type != "text":
            body["response_format"] = _response_format(format_)
        if self.stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def echoed(self) -> dict[str, Any]:
        """The request's settings as every ``response`` object repeats them."""
        return {
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "metadata": self.metadata or {},
            "parallel_tool_calls": True if self.parallel_tool_calls is None else self.parallel_tool_calls,
            "previous_response_id": None,
            "store": False,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "text": self.text.model_dump(by_alias=True, exclude_none=True)
            if self.text is not None and self.text.format is not None
            else {"format": {"type": "text"}},
            "tool_choice": self.tool_choice if self.tool_choice is not None else "auto",
            "tools": [tool.model_dump(exclude_none=True) for tool in self.tools or ()],
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "truncation": self.truncation or "disabled",
            "user": self.user,
        }


def refuse_state(data: dict[str, Any]) -> None:
    """What a stateless endpoint cannot do, said before anything else is checked."""
    if data.get("previous_response_id") is not None:
        raise errors.ApiError(
            400,
            "previous_response_id: this endpoint is stateless and stores no response; "
            "send the whole conversation in `input`.",
            param="previous_response_id",
            code="unsupported_parameter",
        )
    if data.get("reasoning") is not None:
        raise errors.ApiError(
            400,
            "reasoning: reasoning settings are not supported.",
            param="reasoning",
            code="unsupported_parameter",
        )
    if data.get("background"):
        raise errors.ApiError(
            400,
            "background: responses are not run in the background here; "
            "use POST /v1/jobs for deferrable work.",
            param="background",
            code="unsupported_parameter",
        )


def _bad(param: str, message: str) -> errors.ApiError:
    return errors.ApiError(400, f"{param}: {message}", param=param, code="invalid_value")


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], index: int) -> None:
    kind = item.get("type", "message")
    where = f"input.{index}"
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise _bad(f"{where}.role", "expected 'user', 'assistant', 'system' or 'developer'.")
        messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content", role)})
    elif kind == "function_call":
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise _bad(where, "a function_call needs 'call_id', 'name' and 'arguments' as strings.")
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str):
            raise _bad(f"{where}.call_id", "expected a string.")
        text = output if isinstance(output, str) else _text_of(output, f"{where}.output")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
    else:
        raise errors.ApiError(
            400,
            f"{where}.type: input items of type {kind!r} are not supported (use message, function_call "
            "and function_call_output items; this endpoint is stateless).",
            param=f"{where}.type",
            code="unsupported_parameter",
        )


def _content(content: object, where: str, role: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _bad(where, "expected a string or a non-empty array of content parts.")
    if role != "user":
        return _text_of(content, where)
    return [_part(part, f"{where}.{i}") for i, part in enumerate(content)]


def _part(part: object, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise _bad(where, "expected a content part object.")
    kind = part.get("type")
    if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {
            "type": "image_url",
            "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")},
        }
    if kind == "input_file" and isinstance(part.get("file_data"), str):
        return {
            "type": "file",
            "file": {"file_data": part["file_data"], "filename": part.get("filename", "file")},
        }
    raise _bad(
        where,
        "expected input_text (with 'text'), input_image (with an 'image_url' string) "
        "or input_file (with 'file_data'); uploaded file and image ids are not supported.",
    )


def _text_of(parts: object, where: str) -> str:
    if not isinstance(parts, list):
        raise _bad(where, "expected a string or an array of text parts.")
    texts = []
    for i, part in enumerate(parts):
        if not (isinstance(part, dict) and isinstance(part.get("text"), str)):
            raise _bad(f"{where}.{i}", "expected a text part ('input_text' or 'output_text' with 'text').")
        texts.append(part["text"])
    return "".join(texts)


def _tool(tool: FunctionTool, index: int) -> dict[str, Any]:
    if tool.type != "function":
        raise errors.ApiError(
            400,
            f"tools.{index}.type: built-in tools ({tool.type!r}) are not supported; only 'function' tools.",
            param=f"tools.{index}.type",
            code="unsupported_parameter",
        )
    if tool.name is None:
        raise _bad(f"tools.{index}.name", "a function tool needs a name.")
    function: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    }
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice", "expected 'none', 'auto', 'required' or {'type': 'function', 'name': ...}.")


def _response_format(format_: TextFormat) -> dict[str, Any]:
    if format_.type == "json_object":
        return {"type": "json_object"}
    if format_.name is None or format_.schema_ is None:
        raise _bad("text.format", "a json_schema format needs 'name' and 'schema'.")
    schema: dict[str, Any] = {"name": format_.name, "schema": format_.schema_}
    if format_.strict is not None:
        schema["strict"] = format_.strict
    return {"type": "json_schema", "json_schema": schema}


# --- the answer ---------------------------------------------------------------------------------


def response_id(canonical_id: object) -> str:
    text = str(canonical_id or "").removeprefix("chatcmpl-")
    return f"resp_{text}"


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_object(
    id_: str,
    created_at: int,
    model: str,
    echoed: dict[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    incomplete = None
    if finish_reason == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        status, incomplete = "incomplete", {"reason": "content_filter"}
    return {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage,
        **echoed,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def call_item(call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def to_response(canonical_body: bytes, model: str, echoed: dict[str, Any]) -> bytes:
    """A canonical ``chat.completion`` as a Responses ``response``; ``model`` is the one that served."""
    answer = orjson.loads(canonical_body)
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    rid = response_id(answer.get("id"))
    output: list[dict[str, Any]] = []
    text = message.get("content")
    calls = message.get("tool_calls") or []
    if isinstance(text, str) and (text or not calls):
        output.append(message_item(f"msg_{rid.removeprefix('resp_')}", text))
    for call in calls:
        function = call.get("function") or {}
        output.append(
            call_item(str(call.get("id")), str(function.get("name")), str(function.get("arguments", "")))
        )
    usage = answer.get("usage") or {}
    return orjson.dumps(
        response_object(
            rid,
            int(answer.get("created") or 0),
            model,
            echoed,
            status="completed",
            output=output,
            usage=usage_of(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            finish_reason=choice.get("finish_reason"),
        )
    )
