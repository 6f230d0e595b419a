"""The twin of agent_report.py on OpenAI's Agents SDK: an Agent with a function tool, run by the
SDK's `Runner` through Tokens Forge's /v1/responses, inside a gateway run with a budget.

1. POST /v1/runs with a budget (the preflight's recommendation unless --budget-micros);
2. the Agent ("bookkeeper") answers a question; to do so it calls its function tool
   `wallet_balance`, which reads this key's wallet from the gateway (GET /v1/wallet). Every
   model call carries `X-TF-Run-Id`, so the run's budget bounds the whole agent;
3. finish the run and print its receipt: each model call is one request, charged exactly.

The demo's routes speak only chat completions: the gateway translates the Responses API the
SDK speaks onto them (and back, streamed with --stream). Try it against the demo (`make run`
in one shell, it prints a key), then in another, from the repository root:

    .venv/bin/python examples/agent_sdk.py --api-key tf-… --model demo-mini
    make agent-sdk ARGS="--api-key tf-… --stream"            # the same, streamed

Options fall back to the environment: TF_BASE_URL, TF_API_KEY, TF_MODEL, TF_BUDGET_MICROS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from forge_client import (  # first: it checks the packages
    Gateway,
    Refused,
    console,
    explain,
    print_receipt,
    usd,
)
from openai import APIStatusError, AsyncOpenAI

try:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        RunConfig,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
except ImportError:
    sys.exit("this example needs OpenAI's Agents SDK: `.venv/bin/pip install openai-agents` "
             "(`make test` installs it)")

QUESTION = "How much money is left in my wallet? Check it, then answer in one sentence."


def make_agent(gw: Gateway, model: str, client: AsyncOpenAI) -> Agent:
    @function_tool
    def wallet_balance(bucket: str) -> str:
        """The available balance of one wallet bucket (credit or routed), or of both.

        Args:
            bucket: credit, routed, or anything else for both.
        """
        buckets = gw.call("GET", "/wallet")["buckets"]
        names = [bucket] if bucket in buckets else sorted(buckets)
        return "; ".join(f"{n} bucket: {usd(buckets[n]['available_micros'])} available" for n in names)

    return Agent(name="bookkeeper", instructions="You answer questions about the user's money. Use your tools.",
                 tools=[wallet_balance], model=OpenAIResponsesModel(model=model, openai_client=client),
                 model_settings=ModelSettings(max_tokens=64))


async def ask(agent: Agent, stream: bool) -> str:
    config = RunConfig(tracing_disabled=True)  # traces would go to OpenAI: the gateway's receipts tell the story
    if not stream:
        return str((await Runner.run(agent, QUESTION, run_config=config)).final_output)
    result = Runner.run_streamed(agent, QUESTION, run_config=config)
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            console.print(event.data.delta, end="")
        elif event.type == "run_item_stream_event" and event.name == "tool_called":
            console.print(f"[cyan]· calling {event.item.raw_item.name}({event.item.raw_item.arguments})[/cyan]")
    console.print()
    return str(result.final_output)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.api_key:
        console.print("[red]an API key is needed: --api-key or TF_API_KEY[/red]")
        return 2
    set_tracing_disabled(True)
    gw = Gateway(args.base_url, args.api_key)
    try:
        budget = args.budget_micros or gw.preflight(args.model, "quick")["minimum_recommended_balance_micros"]
        run_id = gw.create_run(args.model, "quick", budget, "agents sdk: wallet question")["id"]
    except Refused as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    console.print(f"run {run_id} created with a budget of {usd(budget)}")
    client = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0,
                         default_headers={"X-TF-Run-Id": run_id})
    try:
        answer = asyncio.run(ask(make_agent(gw, args.model, client), args.stream))
    except APIStatusError as exc:
        console.print(f"[red]{explain(exc)}[/red]")
        gw.end(run_id)
        print_receipt(gw, args.base_url, run_id)
        return 1
    except KeyboardInterrupt:
        console.print(f"\n[yellow]run {run_id} is {gw.control(run_id, 'cancel')['status']}[/yellow]")
        print_receipt(gw, args.base_url, run_id)
        return 130
    console.print(f"[bold]answer:[/bold] {answer}")
    gw.end(run_id)
    print_receipt(gw, args.base_url, run_id)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="An Agents SDK agent with a function tool, run through Tokens Forge.")
    p.add_argument("--base-url", default=env("TF_BASE_URL", "http://127.0.0.1:8000/v1"),
                   help="the gateway's OpenAI base URL (TF_BASE_URL)")
    p.add_argument("--api-key", default=env("TF_API_KEY"), help="a gateway key tf-… (TF_API_KEY)")
    p.add_argument("--model", default=env("TF_MODEL", "demo-mini"), help="model (TF_MODEL)")
    p.add_argument("--budget-micros", type=int, default=int(env("TF_BUDGET_MICROS") or 0) or None,
                   help="run budget in micros (TF_BUDGET_MICROS; default: the preflight's recommendation)")
    p.add_argument("--stream", action="store_true", help="stream the answer (Runner.run_streamed)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
