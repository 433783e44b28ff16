"""Typed reading of environment variables; every failure names the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """Returns the variable's value, or the default when it is unset or empty."""
    value = (os.environ if env is None else env).get(name, "")
    return value if value != "" else default


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, minimum: int | None = None) -> int:
    """Returns the variable as an integer, failing with a message that names it."""
    raw = env_str(name, "", env)
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(
    name: str,
    default: float,
    env: Mapping[str, str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Returns the variable as a float, failing with a message that names it."""
    raw = env_str(name, "", env)
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """Returns the variable as a boolean (1/0, true/false, yes/no, on/off)."""
    raw = env_str(name, "", env).strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")
