"""Tokens Forge: an OpenAI-compatible LLM gateway with a spend guard and a double-entry ledger."""

__version__ = "0.1.0"
