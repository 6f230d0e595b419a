"""The web console served at /console: server-rendered pages over the client and admin APIs."""

from tokens_forge.console.router import router

__all__ = ["router"]
