"""A chat completion as a Response object: the assistant's text as a `message` output item with
`output_text` (and `refusal`) content, each tool call as a `function_call` item, usage as
input/output tokens, and `finish_reason: length` as status `incomplete`. The request's own
settings are echoed the way OpenAI echoes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokens_forge.ids import new_id

IdMaker = Callable[[str], str]
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(receipt_id: str) -> str:
    """A Response's id names its receipt: `resp_<the receipt's id>`, so one leads to the other."""
    return "resp_" + receipt_id.removeprefix("rcpt_")


def status_of(finish_reason: Any) -> tuple[str, dict | None]:
    reason = INCOMPLETE_REASONS.get(finish_reason)
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def shell(request: dict[str, Any], *, resp_id: str, created_at: int, model: str, status: str) -> dict[str, Any]:
    """The Response object before its output: what was asked, echoed."""
    text = dict(request.get("text") or {})
    text.setdefault("format", {"type": "text"})
    reasoning = request.get("reasoning") or {}
    return {
        "id": resp_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "model": model, "output": [], "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": None},
        "store": False,  # the gateway keeps no response store: nothing can be fetched or continued
        "temperature": request.get("temperature"), "text": text,
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
        "top_p": request.get("top_p"), "truncation": "disabled", "usage": None,
        "user": request.get("user"), "metadata": request.get("metadata") or {},
    }


def usage_out(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage in the Responses names; the details pass on what the upstream reported."""
    if not isinstance(usage, dict):
        return None
    pt, ct = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {"input_tokens": pt,
            "input_tokens_details": {"cached_tokens": prompt_details.get("cached_tokens") or 0,
                                     "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0},
            "output_tokens": ct,
            "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens") or 0},
            "total_tokens": usage.get("total_tokens") or pt + ct}


def annotations_out(annotations: Any) -> list[dict]:
    out = []
    for a in annotations or []:
        cite = a.get("url_citation") if isinstance(a, dict) else None
        if isinstance(cite, dict):
            out.append({"type": "url_citation", "url": cite.get("url", ""), "title": cite.get("title", ""),
                        "start_index": cite.get("start_index", 0), "end_index": cite.get("end_index", 0)})
    return out


def text_part(text: str, annotations: list[dict] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def message_item(item_id: str, parts: list[dict], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def output_of(message: dict[str, Any], status: str, ids: IdMaker = new_id) -> list[dict]:
    """The output items of one chat message: its text first, then its tool calls, as OpenAI orders them."""
    items: list[dict] = []
    parts = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(text_part(message["content"], annotations_out(message.get("annotations"))))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append(message_item(ids("msg"), parts, "incomplete" if status == "incomplete" else "completed"))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        items.append(call_item(ids("fc"), call.get("id") or ids("call"), fn.get("name") or "",
                               fn.get("arguments") or "", "completed"))
    return items


def from_chat(completion: dict[str, Any], request: dict[str, Any], *, resp_id: str,
              ids: IdMaker = new_id) -> dict[str, Any]:
    """The Response object for a (non-streamed) chat completion answering `request`."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    status, incomplete = status_of(choice.get("finish_reason"))
    out = shell(request, resp_id=resp_id, created_at=int(completion.get("created") or 0),
                model=str(completion.get("model") or request.get("model")), status=status)
    out["incomplete_details"] = incomplete
    out["output"] = output_of(choice.get("message") or {}, status, ids)
    out["usage"] = usage_out(completion.get("usage"))
    if completion.get("service_tier") is not None:
        out["service_tier"] = completion["service_tier"]
    return out
