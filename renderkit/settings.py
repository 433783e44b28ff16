"""Typed reading of environment variables; every failure names the variable."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar


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
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
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


# The longest duration a setting may hold (10 years): Redis takes expiries in milliseconds within a
# signed 64-bit count from now, and a larger one fails every script that sets it, not the start.
MAX_DURATION_S = 10 * 365 * 24 * 3600.0


def env_port(name: str, raw: str) -> int:
    """A TCP port (1-65535) named by a variable."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        raise SettingsError(f"{name} must be a port number, got {raw!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name} must be a port between 1 and 65535, got {port}")
    return port


def env_listen(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """host:port to listen on (port 0: any free one), refused unless the port is 0-65535."""
    value = env_str(name, default, env)
    _host, sep, port = value.rpartition(":")
    # ASCII digits only: str.isdigit() takes "²" (which int() refuses) and other scripts' digits.
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{name} must be host:port with a port of 0-65535, got {value!r}")
    return value


F = TypeVar("F", bound=Callable[..., object])


def refuse_bad_settings(process: str) -> Callable[[F], F]:
    """Wraps a process's main(): a SettingsError ends it with one line naming the variable (exit
    status 2) instead of a traceback."""

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> object:
            try:
                return main(*args, **kwargs)
            except SettingsError as exc:
                print(f"{process}: configuration: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None

        return run  # type: ignore[return-value]

    return wrap
