"""A Responses API request as a chat completions body, for routes that speak only chat
completions. Every top-level field is in exactly one of the tables below: translated, echoed
only (it concerns the gateway, not the model), or refused. A field the translation cannot honour
is a 400 `invalid_request` naming it in `param`, never silently dropped.

Decisions (also in README):
- `instructions` becomes the first message, role `system`; role `developer` becomes `system`
  too (many chat-only providers know no `developer` role).
- `metadata` and `store` are answered in the Response object but not sent upstream: the gateway
  keeps no response store, so nothing can be fetched or continued later (`previous_response_id`
  and `conversation` are refused).
- `include` may ask only for data of items a chat route never produces (reasoning, tool
  results of built-in tools); `message.output_text.logprobs` and `top_logprobs` are refused.
- `max_output_tokens` is sent as the route's `output_cap_param`."""

from __future__ import annotations

from typing import Any

from tokens_forge.errors import InvalidRequest

PASSED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
          "prompt_cache_retention", "service_tier")
TRANSLATED = ("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
              "reasoning", "max_output_tokens", "stream")
ECHOED = ("stream_options", "metadata", "store", "include", "background", "truncation")
REFUSED = {
    "previous_response_id": "a chat-only route keeps no earlier responses; send the whole conversation in input",
    "conversation": "a chat-only route keeps no conversations; send the whole conversation in input",
    "prompt": "stored prompt templates exist only on OpenAI's Responses API",
    "max_tool_calls": "chat completions cannot bound the number of tool calls",
    "top_logprobs": "log probabilities are not translated onto chat completions",
    "context_management": "context management exists only on OpenAI's Responses API",
}
INCLUDE_REFUSED = ("message.output_text.logprobs",)
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def _refuse(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{param} cannot be sent to a route that speaks only chat completions: {why}",
                          param=param)


# -- content -------------------------------------------------------------------------------

def _image_part(part: dict, where: str) -> dict:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id") is not None:
            raise _refuse(f"{where}.file_id", "uploaded files exist only on OpenAI; send image_url "
                                              "(an https or data: URL)")
        raise InvalidRequest(f"{where}.image_url is required and must be a string", param=f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _user_content(content: Any, where: str) -> str | list[dict]:
    """The content of a user, system or developer message: text and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    parts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{at}.text is required and must be a string", param=f"{at}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            parts.append(_image_part(part, at))
        else:
            raise _refuse(f"{at}.type", f"content of type {kind!r} is not translated (text and images are)")
    return parts


def _assistant_message(content: Any, where: str) -> dict:
    """An assistant message of an earlier turn: its text and refusal parts joined."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    texts, refusals = [], []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("output_text", "input_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            refusals.append(part["refusal"])
        else:
            raise _refuse(f"{where}[{j}].type", f"assistant content of type {kind!r} is not translated")
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if refusals:
        msg["refusal"] = "".join(refusals)
    return msg


def _tool_output(output: Any, where: str) -> str | list[dict]:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    parts = []
    for j, part in enumerate(output):
        if part.get("type") not in ("input_text", "output_text") or not isinstance(part.get("text"), str):
            raise _refuse(f"{where}[{j}]", "a chat tool message carries text only")
        parts.append({"type": "text", "text": part["text"]})
    return parts


# -- input items ---------------------------------------------------------------------------

def _call_of(item: dict, where: str) -> dict:
    for name in ("call_id", "name", "arguments"):
        if not isinstance(item.get(name), str):
            raise InvalidRequest(f"{where}.{name} is required and must be a string", param=f"{where}.{name}")
    return {"id": item["call_id"], "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]}}


def _messages(inp: str | list, instructions: str | None) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": instructions}] if instructions is not None else []
    if isinstance(inp, str):
        return [*messages, {"role": "user", "content": inp}]
    for i, item in enumerate(inp):
        where = f"input[{i}]"
        kind = item.get("type")
        if kind is None or kind == "message":
            role = ROLES.get(item.get("role"))
            if role is None:
                raise InvalidRequest(f"{where}.role must be user, assistant, system or developer",
                                     param=f"{where}.role")
            if role == "assistant":
                messages.append(_assistant_message(item.get("content"), f"{where}.content"))
            else:
                messages.append({"role": role, "content": _user_content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = _call_of(item, where)
            last = messages[-1] if messages else None
            # a turn's text and its calls (or parallel calls) are one assistant message in chat
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise InvalidRequest(f"{where}.call_id is required and must be a string", param=f"{where}.call_id")
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _tool_output(item.get("output"), f"{where}.output")})
        elif kind == "item_reference":
            raise _refuse(where, "an item reference needs a stored response; send the item itself")
        else:
            raise _refuse(f"{where}.type", f"items of type {kind!r} are not translated (messages, function_call "
                                           "and function_call_output are)")
    return messages


# -- tools and options -----------------------------------------------------------------------

def _tools(tools: list[dict]) -> list[dict]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _refuse(f"tools[{i}].type", f"built-in tools ({tool.get('type')!r}) run only on OpenAI; "
                                              "function tools are translated")
        if not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools[{i}].name is required and must be a string", param=f"tools[{i}].name")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _refuse("tool_choice", "only none, auto, required or one function tool are translated")


def _response_format(fmt: Any) -> dict | None:
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format must be an object", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest("text.format json_schema needs a name and a schema", param="text.format")
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(f"text.format.type {kind!r} is unknown", param="text.format.type")


def _check_echoed(body: dict) -> None:
    """The fields the gateway answers itself: refuse what it cannot honour."""
    if body.get("background"):
        raise _refuse("background", "background responses need a response store")
    if body.get("truncation") not in (None, "disabled"):
        raise _refuse("truncation", "the gateway does not truncate conversations; send truncation: disabled")
    include = body.get("include") or []
    if not isinstance(include, list):
        raise InvalidRequest("include must be an array of strings", param="include")
    for value in include:
        if value in INCLUDE_REFUSED:
            raise _refuse("include", f"{value} is not translated")
    metadata = body.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise InvalidRequest("metadata must be an object of strings", param="metadata")


def _reasoning(reasoning: Any) -> str | None:
    if not isinstance(reasoning, dict):
        raise InvalidRequest("reasoning must be an object", param="reasoning")
    for name in ("summary", "generate_summary"):
        if reasoning.get(name) is not None:
            raise _refuse(f"reasoning.{name}", "chat completions return no reasoning summaries")
    return reasoning.get("effort")


def to_chat(body: dict[str, Any], *, cap_param: str = "max_completion_tokens") -> dict[str, Any]:
    """The chat completions body that asks the same of the model. `cap_param` is the route's
    `output_cap_param`: the field that carries `max_output_tokens`."""
    for name, why in REFUSED.items():
        if body.get(name) is not None:
            raise _refuse(name, why)
    unknown = sorted(set(body) - set(PASSED) - set(TRANSLATED) - set(ECHOED) - set(REFUSED))
    if unknown:
        raise InvalidRequest(f"unknown parameter: {unknown[0]}", param=unknown[0])
    _check_echoed(body)
    chat: dict[str, Any] = {"model": body["model"],
                            "messages": _messages(body["input"], body.get("instructions"))}
    chat.update({k: body[k] for k in PASSED if body.get(k) is not None})
    tools = _tools(body.get("tools") or [])
    if tools:
        chat["tools"] = tools
        if body.get("parallel_tool_calls") is not None:  # chat refuses it without tools
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    text = body.get("text")
    if text is not None:
        if not isinstance(text, dict):
            raise InvalidRequest("text must be an object", param="text")
        if text.get("format") is not None and (fmt := _response_format(text["format"])) is not None:
            chat["response_format"] = fmt
        if text.get("verbosity") is not None:
            chat["verbosity"] = text["verbosity"]
    if body.get("reasoning") is not None and (effort := _reasoning(body["reasoning"])) is not None:
        chat["reasoning_effort"] = effort
    if body.get("max_output_tokens") is not None:
        chat[cap_param] = body["max_output_tokens"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
