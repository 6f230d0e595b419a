"""Seed a fresh gateway over the admin API (SPEC §7) for the benchmark: one account with both
buckets funded far beyond what the bench can spend, a project, a key without limits, and routes

  bench-json  (official) -> the nginx fake upstream, non-streaming body
  bench-sse   (routed)   -> the nginx fake upstream, SSE body
  bench-drip  (official) -> the built-in mock upstream, `drip:<ms>` (slow streams, memory test)

Usage: python bench/seed.py GATEWAY_URL ADMIN_TOKEN NGINX_URL MOCK_URL DRIP_MS OUT_JSON
"""

from __future__ import annotations

import json
import sys

import httpx

FUNDS = 10**14  # 100 M USD in micros per bucket: no bench run gets near it
PRICE = {"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000}


def post(client: httpx.Client, path: str, body: dict) -> dict:
    resp = client.post(path, json=body)
    if resp.status_code not in (200, 201):
        sys.exit(f"seed: POST {path} answered {resp.status_code}: {resp.text}")
    return resp.json()


def route(client: httpx.Client, model: str, kind: str, base_url: str, upstream_model: str) -> str:
    return post(client, "/admin/v1/routes", {
        "model": model, "kind": kind, "base_url": base_url, "upstream_model": upstream_model,
        "upstream_api_key": "sk-bench", "price": PRICE, "timeout_s": 300,
    })["id"]


def main() -> None:
    gateway, admin, nginx, mock, drip_ms, out = sys.argv[1:7]
    with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as client:
        account = post(client, "/admin/v1/accounts", {"name": "bench"})["id"]
        for bucket in ("credit", "routed"):
            post(client, f"/admin/v1/accounts/{account}/topups",
                 {"bucket": bucket, "amount_micros": FUNDS, "reference": f"bench-{bucket}"})
        project = post(client, "/admin/v1/projects", {"account_id": account, "name": "bench"})["id"]
        key = post(client, "/admin/v1/keys", {"project_id": project, "name": "bench"})
        routes = {
            "bench-json": route(client, "bench-json", "official", f"{nginx}/json/v1", "bench-upstream"),
            "bench-sse": route(client, "bench-sse", "routed", f"{nginx}/sse/v1", "bench-upstream"),
            "bench-drip": route(client, "bench-drip", "official", f"{mock}/v1", f"drip:{drip_ms}"),
        }
    seeded = {"account_id": account, "project_id": project, "key_id": key["id"], "secret": key["secret"],
              "routes": routes}
    with open(out, "w") as f:
        json.dump(seeded, f, indent=2)


if __name__ == "__main__":
    main()
