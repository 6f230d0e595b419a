"""Rendering: one Jinja2 environment over the package's templates, the filters that present
integer micros (formatting only: every amount shown comes from an API answer), and the
headers every console page carries."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from tokens_forge import __version__
from tokens_forge.console.session import Session

MICROS_PER_USD = 1_000_000

# Scripts and styles only from the console's own static files: no inline script, no CDN.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def usd(micros: int | None) -> str:
    """12_345 -> "$0.012345", exact (integer arithmetic, never a float)."""
    if micros is None:
        return "—"
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(int(micros)), MICROS_PER_USD)
    return f"{sign}${whole:,}.{frac:06d}"


def price(micros: int | None) -> str:
    """Micros as dollars with the zeros after the cents dropped: 150_000 -> "$0.15", 1_250 -> "$0.00125"."""
    if micros is None:
        return "—"
    text = usd(micros)
    whole, frac = text.split(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def grouped(n: int | None) -> str:
    return "—" if n is None else f"{int(n):,}"


def percent(part: int | None, whole: int | None) -> int:
    """How full a bar is, 0-100 (presentation only)."""
    if not whole or part is None:
        return 0
    return max(0, min(100, int(part) * 100 // int(whole)))


def when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("tokens_forge.console", "templates"),
                      autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=usd, grouped=grouped, when=when, price=price)
    env.globals.update(percent=percent, version=__version__)
    return env


def html(request: Request, template: str, session: Session | None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    body = environment().get_template(template).render(request=request, session=session, **context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
