"""A small research-report agent run through Tokens Forge with the official OpenAI SDK.

It shows the gateway's run workflow end to end:
1. POST /v1/preflight for the chosen mode, and print the panel (cost, runtime, caps, warnings);
2. ask for confirmation (`--yes` skips it), then POST /v1/runs with a budget;
3. write the report (outline, three sections, summary), every call tagged `X-TF-Run-Id`, with a
   live view of the step, the run's spend against its budget, and its state;
4. finish the run and print where its receipt is. Ctrl-C cancels the run instead
   (POST /v1/runs/{id}/cancel): the gateway aborts the call in flight and charges only what was used.

Try it against the demo (no network needed): `make run` in one shell (it creates .venv and prints
a key), then in another, from the repository root, with the project's Python:

    .venv/bin/python examples/agent_report.py --api-key tf-… --model demo-mini
    make agent ARGS="--api-key tf-…"                         # the same

A refusal (no money left, a spent budget, a paused run) is told in plain words, with the
gateway's advice and the receipt id. Its twin on OpenAI's Agents SDK is examples/agent_sdk.py.

Options fall back to the environment: TF_BASE_URL, TF_API_KEY, TF_MODEL, TF_MODE, TF_BUDGET_MICROS.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from forge_client import (  # first: it checks the packages
    Gateway,
    Refused,
    console,
    explain,
    print_receipt,
    usd,
)
from openai import APIStatusError, OpenAI
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.prompt import Confirm
from rich.table import Table

SECTIONS = 3  # outline, 3 sections, summary: 5 calls, a `standard` run
MAX_TOKENS = {"quick": 200, "standard": 400, "deep": 800}
STATE_STYLE = {"ready": "cyan", "running": "green", "paused": "yellow", "cancelled": "red",
               "finished": "bold green", "budget_exhausted": "red"}


# -- printing ------------------------------------------------------------------------------------

def panel_table(p: dict) -> Panel:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    cost, tokens, rt = p["estimated_cost_micros"], p["estimated_tokens"], p["estimated_runtime_s"]
    t.add_row("key", f"{p['api_key']['name']} ({p['api_key']['prefix']}…)")
    t.add_row("model / mode", f"{p['model']} / {p['mode']}")
    t.add_row("route", f"{p['route']['id']} ({p['route']['kind']}, {p['route']['health']})")
    t.add_row("paid from", f"{p['paying_bucket']} bucket: {usd(p['balance']['available_micros'])} available")
    t.add_row("estimated tokens", f"{tokens['low']:,} – {tokens['high']:,}")
    t.add_row("estimated cost", f"{usd(cost['low'])} – {usd(cost['high'])}")
    t.add_row("estimated runtime", f"{rt['low']} – {rt['high']} s")
    t.add_row("recommended balance", usd(p["minimum_recommended_balance_micros"]))
    for scope, lim in p["limits"].items():
        if lim["limit"] is not None:
            t.add_row(f"limit {scope}", f"{usd(lim['remaining'])} left of {usd(lim['limit'])}")
    t.add_row("key spend", f"today {usd(p['current_key_spend_micros']['today'])}, "
                           f"total {usd(p['current_key_spend_micros']['total'])}")
    fb = p["fallback_policy"]
    t.add_row("fallback", f"{fb['policy']}" + "".join(
        f"; {r['id']} ({r['kind']}{', other bucket' if r['changes_bucket'] else ''})" for r in fb["routes"]))
    t.add_row("failed requests", "may be charged" if p["failed_request_charge_policy"]["charges_on_failure"]
              else "not charged")
    t.add_row("cancel", p["cancel"]["url"] or "—")
    for w in p["warnings"]:
        t.add_row("[yellow]warning[/yellow]", f"[yellow]{w['code']}[/yellow]: {w['message']}")
    verdict = "[green]ok to start[/green]" if p["ok_to_start"] else "[red]not ok to start[/red]"
    return Panel(t, title="Preflight", subtitle=verdict)


@dataclass
class Progress:
    steps: list[str]
    done: dict[str, int] = field(default_factory=dict)  # step -> completion tokens
    current: str | None = None
    run: dict = field(default_factory=dict)

    def view(self) -> Group:
        t = Table("step", "state", "tokens")
        for s in self.steps:
            state = "[green]done[/green]" if s in self.done else ("[cyan]writing…[/cyan]" if s == self.current else "")
            t.add_row(s, state, str(self.done.get(s, "")))
        r = self.run
        status = r.get("status", "?")
        money = (f"spent {usd(r.get('spent_micros'))} + held {usd(r.get('held_micros'))} "
                 f"of budget {usd(r.get('budget_micros'))}")
        return Group(t, f"run {r.get('id')} [{STATE_STYLE.get(status, 'white')}]{status}[/] · {money}")


# -- the agent ---------------------------------------------------------------------------------

def ask(client: OpenAI, model: str, prompt: str, max_tokens: int) -> tuple[str, int]:
    resp = client.chat.completions.create(
        model=model, max_tokens=max_tokens,
        messages=[{"role": "system", "content": "You are a careful research assistant."},
                  {"role": "user", "content": prompt}])
    text = resp.choices[0].message.content or ""
    return text, resp.usage.completion_tokens if resp.usage else 0


def write_report(client: OpenAI, gw: Gateway, args: argparse.Namespace, run_id: str) -> str:
    steps = ["outline", *[f"section {i + 1}" for i in range(SECTIONS)], "summary"]
    prog = Progress(steps, run=gw.run(run_id))
    limit = MAX_TOKENS[args.mode]
    parts: list[str] = []
    with Live(prog.view(), console=console, refresh_per_second=4) as live:
        for step in steps:
            prog.current = step
            live.update(prog.view())
            if step == "outline":
                prompt = f"Write an outline with {SECTIONS} sections for a short report on: {args.topic}"
            elif step == "summary":
                prompt = "Summarise this report in one paragraph:\n\n" + "\n\n".join(parts)
            else:
                prompt = f"Report on {args.topic}. Outline:\n{parts[0]}\n\nWrite {step}."
            text, tokens = ask(client, args.model, prompt, limit)
            parts.append(text)
            prog.done[step] = tokens
            prog.run = gw.run(run_id)
            live.update(prog.view())
        prog.current = None
    console.print()
    return "\n\n".join(f"## {s}\n\n{p}" for s, p in zip(steps, parts, strict=True))


def confirm(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        console.print("[red]no terminal to confirm on: pass --yes to start without asking[/red]")
        return False
    return Confirm.ask("Start the run?", default=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.api_key:
        console.print("[red]an API key is needed: --api-key or TF_API_KEY[/red]")
        return 2
    try:
        return agent(args)
    except Refused as exc:
        console.print(f"[red]{exc}[/red]")
        return 1


def agent(args: argparse.Namespace) -> int:
    gw = Gateway(args.base_url, args.api_key)
    pf = gw.preflight(args.model, args.mode)
    console.print(panel_table(pf))
    if not pf["ok_to_start"]:
        console.print("[red]the preflight says this run cannot start (see the warnings)[/red]")
        return 2
    if not confirm(args):
        return 1
    budget = args.budget_micros or pf["minimum_recommended_balance_micros"]
    run = gw.create_run(args.model, args.mode, budget, f"report: {args.topic}"[:200])
    run_id = run["id"]
    console.print(f"run {run_id} created with a budget of {usd(budget)}; Ctrl-C cancels it")
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0,
                    default_headers={"X-TF-Run-Id": run_id})
    try:
        report = write_report(client, gw, args, run_id)
    except KeyboardInterrupt:
        console.print(f"\n[yellow]cancelling run {run_id}…[/yellow]")
        console.print(f"run {run_id} is {gw.control(run_id, 'cancel')['status']}")
        print_receipt(gw, args.base_url, run_id)
        return 130
    except APIStatusError as exc:
        console.print(f"[red]{explain(exc)}[/red]")
        gw.end(run_id)
        print_receipt(gw, args.base_url, run_id)
        return 1
    gw.control(run_id, "finish")
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        console.print(f"report written to {args.out}")
    else:
        console.print(Panel(report[:2000], title="Report"))
    print_receipt(gw, args.base_url, run_id)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="A research-report agent run through Tokens Forge.")
    p.add_argument("--base-url", default=env("TF_BASE_URL", "http://127.0.0.1:8000/v1"),
                   help="the gateway's OpenAI base URL (TF_BASE_URL)")
    p.add_argument("--api-key", default=env("TF_API_KEY"), help="a gateway key tf-… (TF_API_KEY)")
    p.add_argument("--model", default=env("TF_MODEL", "demo-mini"), help="model (TF_MODEL)")
    p.add_argument("--mode", default=env("TF_MODE", "standard"), choices=("quick", "standard", "deep"),
                   help="run mode (TF_MODE)")
    p.add_argument("--budget-micros", type=int, default=int(env("TF_BUDGET_MICROS") or 0) or None,
                   help="run budget in micros (TF_BUDGET_MICROS; default: the preflight's recommendation)")
    p.add_argument("--topic", default="how double-entry ledgers keep API billing honest")
    p.add_argument("--out", help="write the report to this file")
    p.add_argument("--yes", action="store_true", help="start without asking for confirmation")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the run exists (preflight, confirmation): nothing to cancel
        sys.exit(130)
