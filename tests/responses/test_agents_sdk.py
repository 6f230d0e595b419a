"""OpenAI's Agents SDK `Runner` with a function tool, over the translation alone: its Responses
requests are translated onto chat completions, answered by the mock upstream's chat logic, and
translated back (non-streamed and streamed). The end-to-end twin through the gateway is in
tests/api/test_responses.py."""

import httpx
import orjson
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tokens_forge.mock.upstream import chunks, completion
from tokens_forge.responses.events import ChatToResponsesStream, sse
from tokens_forge.responses.request import parse_responses_request
from tokens_forge.responses.response import from_chat
from tokens_forge.responses.translate import to_chat


def translating_client(seen: list) -> AsyncOpenAI:
    async def answer(request: httpx.Request) -> httpx.Response:
        body = parse_responses_request(request.content).body
        seen.append(body)
        chat = to_chat(body)
        if not body.get("stream"):
            return httpx.Response(200, json=from_chat(completion(chat, "mock", "c1"), body, resp_id="resp_1"))
        t = ChatToResponsesStream(body, resp_id="resp_1", created_at=1, model="mock")
        out = b"".join(sse(e) for e in t.start())
        async for c in chunks(chat, "mock", "c1"):
            out += b"".join(sse(e) for e in t.feed(c))
        out += b"".join(sse(e) for e in t.finish())
        return httpx.Response(200, content=out, headers={"content-type": "text/event-stream"})

    return AsyncOpenAI(api_key="k", base_url="http://gw.test/v1",
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer)))


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@pytest.mark.parametrize("stream", [False, True])
async def test_runner_calls_the_tool_and_answers_with_its_result(stream):
    set_tracing_disabled(True)
    seen: list = []
    agent = Agent(name="calc", instructions="Use your tools.", tools=[add],
                  model=OpenAIResponsesModel(model="m", openai_client=translating_client(seen)))
    config = RunConfig(tracing_disabled=True)
    if stream:
        result = Runner.run_streamed(agent, "what is 1+1?", run_config=config)
        kinds = [e.type async for e in result.stream_events()]
        assert "raw_response_event" in kinds
    else:
        result = await Runner.run(agent, "what is 1+1?", run_config=config)
    assert result.final_output == "2"  # the mock answers with the tool's result: add(1, 1)
    first, second = seen
    assert first["tools"][0]["name"] == "add" and first["instructions"] == "Use your tools."
    call, output = second["input"][1], second["input"][2]
    assert (call["type"], call["name"], orjson.loads(call["arguments"])) == ("function_call", "add", {"a": 1, "b": 1})
    assert (output["type"], output["call_id"], output["output"]) == ("function_call_output", call["call_id"], "2")
