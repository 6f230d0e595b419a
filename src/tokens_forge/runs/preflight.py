"""The preflight panel (SPEC §5): what one request or a whole run will likely cost, take and risk,
before anything is sent. It only reads: nothing is reserved or charged.

Estimates, priced at the first planned route's current price (guard.money):
- one request (`messages` given): input low = characters/4 (what upstreams count), high = the
  guard's true upper bound; output low = one token per choice, high = `max_tokens` (or the
  default the gateway would set). The high cost is exactly the reservation the guard would make.
- a run (no `messages`): the mode profile's calls × per-call tokens (`max_tokens` caps a call's
  output). Runtime: the route's observed p50 (low) and p95 (high) call duration, attempt start to
  end, in runs of the same mode where there are enough (`runs.durations`).

`ok_to_start` says whether what must be reservable to start fits the balance and every cap: the
low estimate for a run; for one request, the reservation itself (with `max_tokens` the guard
reserves the high estimate; without, it shrinks max_tokens to fit, so one output token must fit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.configfile import ModeProfile
from tokens_forge.guard import money
from tokens_forge.guard.money import ceil_div, cost
from tokens_forge.keys.auth import AuthedKey
from tokens_forge.ledger.service import balances
from tokens_forge.ledger.views import key_spend
from tokens_forge.pipeline.request import parse_chat_request
from tokens_forge.routing.cache import RouteInfo
from tokens_forge.routing.selection import plan_routes
from tokens_forge.runs import durations
from tokens_forge.runs.profiles import profiles_of
from tokens_forge.runs.schemas import PreflightRequest

DEFAULT_MODE = "standard"
RECOMMENDED_MARGIN_PERCENT = 20
NEAR_LIMIT_FRACTION = 0.10
SCOPES = ("key_daily", "key_total", "key_per_request", "project_daily", "project_total", "run")


@dataclass(frozen=True)
class Span:
    low: int
    high: int

    @classmethod
    def of(cls, a: int, b: int) -> Span:
        return cls(min(a, b), max(a, b))

    def times(self, calls: Span) -> Span:
        return Span(self.low * calls.low, self.high * calls.high)


@dataclass(frozen=True)
class Estimate:
    basis: str
    calls: Span
    tokens: Span
    cost: Span
    must_fit: int           # what must be reservable in total to start
    per_call_must_fit: int  # what one call must be able to reserve (the per-request cap)
    per_call_high: int


@dataclass(frozen=True)
class RunContext:
    """The run a preflight is for: an existing one (`run_id`) or one being created."""
    id: str
    mode: str
    route_preference: str
    status: str
    budget_micros: int
    posted_micros: int
    pending_micros: int


@dataclass(frozen=True)
class Limit:
    limit: int | None
    spent: int | None
    held: int | None

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        return max(self.limit - (self.spent or 0) - (self.held or 0), 0)

    def as_dict(self) -> dict:
        return {"limit": self.limit, "spent": self.spent, "held": self.held, "remaining": self.remaining}


# -- estimates (pure) ------------------------------------------------------------------------

def request_estimate(body: PreflightRequest, route: RouteInfo, default_max_tokens: int) -> Estimate:
    """One chat request, sized by guard.money exactly as the guard sizes it."""
    raw: dict[str, Any] = {"model": body.model, "messages": body.messages}
    if body.max_tokens is not None:
        raw["max_tokens"] = body.max_tokens
    req = parse_chat_request(orjson.dumps(raw))  # the same checks as /v1/chat/completions
    cap = req.client_cap or default_max_tokens
    high = money.size_attempt(req.shape, route.terms, client_cap=cap, n=req.n)
    smallest = money.size_attempt(req.shape, route.terms, client_cap=1, n=req.n)
    in_low, in_high = high.prompt_estimate, high.input_bound
    out_low, out_high = req.n, high.output_bound
    must_fit = high.amount if req.client_cap is not None else smallest.amount
    return Estimate(
        basis=f"one request: {in_low}-{in_high} input and {out_low}-{out_high} output tokens",
        calls=Span(1, 1), tokens=Span(in_low + out_low, in_high + out_high),
        cost=Span(cost(in_low, out_low, route.price), high.amount), must_fit=must_fit,
        per_call_must_fit=must_fit, per_call_high=high.amount)


def run_estimate(profile: ModeProfile, mode: str, route: RouteInfo, max_tokens: int | None) -> Estimate:
    calls = Span.of(profile.calls.low, profile.calls.high)
    inp = Span.of(profile.input_tokens.low, profile.input_tokens.high)
    out = Span.of(profile.output_tokens.low, profile.output_tokens.high)
    if max_tokens is not None:
        out = Span(min(out.low, max_tokens), min(out.high, max_tokens))
    per_call = Span(cost(inp.low, out.low, route.price), cost(inp.high, out.high, route.price))
    total = per_call.times(calls)
    return Estimate(
        basis=(f"{mode} run: {calls.low}-{calls.high} calls of {inp.low}-{inp.high} input and "
               f"{out.low}-{out.high} output tokens"),
        calls=calls, tokens=Span(inp.low + out.low, inp.high + out.high).times(calls), cost=total,
        must_fit=total.low, per_call_must_fit=money.reservation_floor(per_call.low, route.terms.failure),
        per_call_high=money.reservation_floor(per_call.high, route.terms.failure))


def recommended_balance(high: int) -> int:
    return high + ceil_div(high * RECOMMENDED_MARGIN_PERCENT, 100)


# -- verdicts (pure) -------------------------------------------------------------------------

def blockers(est: Estimate, limits: dict[str, Limit], available: int) -> list[str]:
    """What stops the start: 'balance' and/or the scopes whose remaining cannot pay."""
    out = ["balance"] if available < est.must_fit else []
    for scope, lim in limits.items():
        need = est.per_call_must_fit if scope == "key_per_request" else est.must_fit
        if lim.remaining is not None and lim.remaining < need:
            out.append(scope)
    return out


def _near_limit(scope: str, lim: Limit, est: Estimate) -> str | None:
    if lim.limit is None or lim.remaining is None:
        return None
    if scope == "key_per_request":
        if est.per_call_high > lim.limit:
            return (f"key_per_request: a call may need up to {est.per_call_high} micros but the key allows "
                    f"{lim.limit} per request; large calls will be refused (lower max_tokens)")
        return None
    if lim.remaining < est.cost.high:
        return (f"{scope}: {lim.remaining} micros left, below the high estimate of {est.cost.high}; "
                f"the work may be cut short (raise the limit or pick a lighter mode)")
    if lim.remaining < lim.limit * NEAR_LIMIT_FRACTION:
        return f"{scope}: only {lim.remaining} of {lim.limit} micros left"
    return None


def warnings(est: Estimate, limits: dict[str, Limit], *, bucket: str, available: int, min_balance: int,
             plan: list[dict], fallback_policy: str, run_status: str | None) -> list[dict]:
    """`plan`: the planned routes as dicts with id, bucket, health, failed_charge_mode."""
    out: list[dict] = []

    def warn(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    recommended = recommended_balance(est.cost.high)
    if available < recommended:
        warn("balance_below_recommended",
             f"the {bucket} bucket has {available} micros available, below the recommended {recommended} "
             f"(high estimate + {RECOMMENDED_MARGIN_PERCENT}%); top up the {bucket} bucket")
    if available < min_balance:
        warn("balance_below_key_minimum",
             f"the {bucket} bucket has {available} micros, below this key's minimum of {min_balance}")
    elif available - est.cost.high < min_balance:
        warn("balance_below_key_minimum",
             f"after up to {est.cost.high} micros of spend the {bucket} bucket may fall below this key's "
             f"minimum of {min_balance}")
    for scope, lim in limits.items():
        msg = _near_limit(scope, lim, est)
        if msg:
            warn("near_spend_limit", msg)
    for r in plan:
        if r["health"] in ("degraded", "down"):
            warn("route_degraded", f"route {r['id']} is {r['health']}; expect failures or slow answers")
    others = [r["id"] for r in plan[1:] if r["bucket"] != bucket]
    if fallback_policy == "any_bucket" and others:
        warn("fallback_changes_bucket",
             f"if route {plan[0]['id']} fails, fallback route(s) {', '.join(others)} are paid from the other "
             f"bucket (fallback_policy any_bucket)")
    charging = [r["id"] for r in plan if r["failed_charge_mode"] != "none"]
    if charging:
        warn("failed_requests_may_charge", f"failed attempts on route(s) {', '.join(charging)} are charged "
                                           f"(see failed_request_charge_policy)")
    if run_status in ("paused", "cancelled", "finished", "budget_exhausted"):
        warn("run_not_accepting", f"the run is {run_status}: it accepts no new requests")
    return out


# -- facts from the database -----------------------------------------------------------------

_LIMITS_SQL = text("""
    WITH day AS (SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS d)
    SELECT k.daily_limit_micros AS key_daily, k.total_limit_micros AS key_total,
           k.per_request_limit_micros AS key_per_request, k.min_balance_micros,
           p.daily_limit_micros AS project_daily, p.total_limit_micros AS project_total,
           (SELECT json_object_agg(sc.scope, json_build_array(sc.posted_micros, sc.pending_micros))
              FROM spend_counters sc, day
             WHERE (sc.owner_id = k.id AND ((sc.scope = 'key_daily' AND sc.period = day.d) OR sc.scope = 'key_total'))
                OR (sc.owner_id = p.id AND ((sc.scope = 'project_daily' AND sc.period = day.d)
                                            OR sc.scope = 'project_total'))) AS counters
      FROM api_keys k JOIN projects p ON p.id = k.project_id
     WHERE k.id = :k""")


async def _limits(conn: AsyncConnection, key_id: str, run: RunContext | None) -> tuple[dict[str, Limit], int]:
    """Every cap that applies (limit null = none) and the key's min_balance_micros. Read from the
    tables, not the key cache, so that a limit just changed by an admin shows at once."""
    row = (await conn.execute(_LIMITS_SQL, {"k": key_id})).one()
    counters = row.counters or {}
    limits: dict[str, Limit] = {}
    for scope in SCOPES:
        if scope == "key_per_request":
            limits[scope] = Limit(row.key_per_request, None, None)
        elif scope == "run":
            if run is not None:
                limits[scope] = Limit(run.budget_micros, run.posted_micros, run.pending_micros)
        else:
            posted, pending = counters.get(scope, (0, 0))
            limits[scope] = Limit(getattr(row, scope), int(posted), int(pending))
    return limits, int(row.min_balance_micros)


# -- the panel ---------------------------------------------------------------------------------

def _route_entry(route: RouteInfo, health: str, first_bucket: str) -> dict:
    return {"id": route.id, "kind": route.kind, "bucket": route.bucket, "health": health,
            "changes_bucket": route.bucket != first_bucket,
            "failed_charge_mode": route.failed_charge_mode}


CHARGE_MEANING = {"none": "nothing is charged",
                  "input_tokens": "its input tokens are charged",
                  "flat": "a flat {flat} micros is charged"}
# A failed attempt is charged by one of two rules, depending on whether it delivered content.
DELIVERED_RULE = ("content delivered (a stream cut or cancelled after it sent output): input plus the output "
                  "tokens actually delivered, at the route's price")


def _failure_policy(routes: list[RouteInfo]) -> dict:
    entries = [{"route_id": r.id, "kind": r.kind, "mode": r.failed_charge_mode,
                "flat_micros": r.failed_charge_flat_micros,
                "nothing_delivered": "an attempt that fails before delivering any content: "
                                     + CHARGE_MEANING[r.failed_charge_mode].format(flat=r.failed_charge_flat_micros),
                "content_delivered": DELIVERED_RULE,
                "meaning": ("nothing delivered: " + CHARGE_MEANING[r.failed_charge_mode].format(
                    flat=r.failed_charge_flat_micros) + "; " + DELIVERED_RULE)}
               for r in routes]
    return {"charges_on_failure": any(r.failed_charge_mode != "none" for r in routes),
            "rules": {"nothing_delivered": "the route's failed_request_charge (mode below)",
                      "content_delivered": DELIVERED_RULE},
            "routes": entries}


def _locations(run: RunContext | None, is_run: bool) -> dict[str, Any]:
    if run is not None or is_run:
        rid = run.id if run is not None else "{run_id}"
        return {"cancel": {"supported": True, "url": f"/v1/runs/{rid}/cancel"},
                "receipt_location": f"/v1/runs/{rid}/receipt",
                "ledger_location": f"/v1/wallet/ledger?run_id={rid}"}
    return {"cancel": {"supported": False, "url": None,
                       "note": "send the request with X-TF-Run-Id to be able to cancel it remotely"},
            "receipt_location": "/v1/receipts/{receipt_id} (the id is in the X-TF-Receipt-Id response header)",
            "ledger_location": "/v1/wallet/ledger"}


async def build(state: Any, conn: AsyncConnection, key: AuthedKey, body: PreflightRequest,
                run: RunContext | None) -> dict:
    """The panel for `body`, or for `run` (an existing run, or one being created)."""
    preference = body.route_preference or (run.route_preference if run else "auto")
    routes = plan_routes(body.model, await state.routes.for_model(body.model), key, preference,
                         state.health.is_down)
    route = routes[0]
    mode = body.mode or (run.mode if run else None)
    if body.messages is not None:
        est = request_estimate(body, route, state.settings.default_max_tokens)
    else:
        mode = mode or DEFAULT_MODE
        est = run_estimate(profiles_of(state).get(body.model, mode), mode, route, body.max_tokens)
    available = (await balances(conn, key.account_id))[route.bucket].available_micros
    limits, min_balance = await _limits(conn, key.id, run)
    plan = [_route_entry(r, state.health.state(r.id), route.bucket) for r in routes]
    stopped = blockers(est, limits, available)
    return {
        "api_key": {"id": key.id, "name": key.name, "prefix": key.prefix},
        "model": body.model,
        "mode": mode,
        "route": {"id": route.id, "kind": route.kind, "health": plan[0]["health"],
                  "price": {"input_per_mtok": route.price.input_per_mtok,
                            "output_per_mtok": route.price.output_per_mtok}},
        "paying_bucket": route.bucket,
        "estimated_tokens": {"low": est.tokens.low, "high": est.tokens.high, "basis": est.basis},
        "estimated_cost_micros": {"low": est.cost.low, "high": est.cost.high},
        "estimated_runtime_s": durations.runtime_estimate(
            await durations.call_duration(conn, route.id, mode if body.messages is None else None),
            est.calls.low, est.calls.high, route.timeout_s),
        "minimum_recommended_balance_micros": recommended_balance(est.cost.high),
        "balance": {"bucket": route.bucket, "available_micros": available},
        "limits": {scope: lim.as_dict() for scope, lim in limits.items()},
        "current_key_spend_micros": await key_spend(conn, key.id),
        "retry_policy": key.retry_policy,
        "fallback_policy": {"policy": key.fallback_policy, "routes": plan[1:]},
        "failed_request_charge_policy": _failure_policy(routes),
        **_locations(run, body.messages is None),
        "warnings": warnings(est, limits, bucket=route.bucket, available=available, min_balance=min_balance,
                             plan=plan, fallback_policy=key.fallback_policy,
                             run_status=run.status if run else None),
        "ok_to_start": not stopped and not (run and run.status in ("paused", "cancelled", "finished",
                                                                   "budget_exhausted")),
    }
