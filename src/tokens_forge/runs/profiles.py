"""Mode profiles: how many calls a run of each mode makes and how large each call is, used by the
preflight to estimate a run. Built-in defaults (each deeper mode strictly larger in every range),
overridable per model and per mode in the config file (`models.<name>.profiles.<mode>`).

The file is read on first use and kept for the life of the process: it is the same file the
server applied at start-up, so it cannot change under a running process without a restart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tokens_forge.configfile import ConfigError, ModeProfile, Range, parse_config

log = logging.getLogger("tokens_forge.runs")

MODES = ("quick", "standard", "deep")


def _profile(calls: tuple[int, int], input_tokens: tuple[int, int], output_tokens: tuple[int, int]) -> ModeProfile:
    return ModeProfile(calls=Range(low=calls[0], high=calls[1]),
                       input_tokens=Range(low=input_tokens[0], high=input_tokens[1]),
                       output_tokens=Range(low=output_tokens[0], high=output_tokens[1]))


# Per call: input tokens (the prompt, growing with the context an agent carries) and output tokens.
DEFAULT_PROFILES: dict[str, ModeProfile] = {
    "quick": _profile((1, 3), (300, 1_500), (100, 500)),
    "standard": _profile((3, 8), (800, 4_000), (300, 1_200)),
    "deep": _profile((8, 25), (2_000, 12_000), (600, 3_000)),
}


class ProfileBook:
    """The profiles of one process: defaults, with the config file's overrides on top."""

    def __init__(self, config_path: Path | None):
        self._path = config_path
        self._overrides: dict[str, dict[str, ModeProfile]] | None = None

    def get(self, model: str, mode: str) -> ModeProfile:
        if self._overrides is None:
            self._overrides = self._load()
        return self._overrides.get(model, {}).get(mode) or DEFAULT_PROFILES[mode]

    def _load(self) -> dict[str, dict[str, ModeProfile]]:
        if self._path is None:
            return {}
        try:
            cfg = parse_config(self._path)
        except ConfigError as exc:
            # start-up refuses a bad file, so this only happens if it changed since: keep serving
            log.warning("mode profiles: using the defaults: %s", exc)
            return {}
        return {model: {mode: p for mode, p in spec.profiles.items()} for model, spec in cfg.models.items() if spec.profiles}


def profiles_of(state: Any) -> ProfileBook:
    """The process's ProfileBook, made on first use and kept on app.state."""
    book = state.profiles
    if book is None:
        book = state.profiles = ProfileBook(state.settings.config)
    return book
