"""Every environment variable the code reads is documented in the README's configuration table.

The variables are found in the sources, not listed here, so a setting added anywhere in gateway/,
services/, renderkit/, devstack/, the client or benchmarks/ (or to deploy/local/stack.env) fails this test until the
README names it.
"""

from __future__ import annotations

import ast
import re

import pytest

from devstack.launcher import ROOT, STACK_ENV, read_env_file

SOURCES = ("gateway", "services", "renderkit", "devstack", "clients/python/render_client", "benchmarks")
ENV_HELPERS = {"env_str", "env_int", "env_float", "env_bool"}
ENVIRON_METHODS = {"get", "setdefault", "pop"}
HOLE = "<>"  # stands for the variable part of a name: f"{prefix}_LISTEN" and `<STAGE>_LISTEN` both read <>_LISTEN


def _is_environ(node: ast.expr) -> bool:
    """os.environ, or environ imported from os."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _name_of(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The variable name an argument spells: a literal, an f-string (holes as HOLE) or a module constant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else HOLE
            for part in node.values
        )
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def names_read(source: str) -> set[str]:
    """The environment variables a module reads, by every way this codebase reads them."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            helper = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            environ_call = isinstance(func, ast.Attribute) and func.attr in ENVIRON_METHODS and _is_environ(func.value)
            if helper in ENV_HELPERS or environ_call or helper == "getenv":
                found.add(_name_of(node.args[0], constants))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            found.add(_name_of(node.slice, constants))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            found.add(_name_of(node.left, constants))  # "NAME" in os.environ
    return {name for name in found if name and name != HOLE}


def documented() -> set[str]:
    """The names in the first column of the README's configuration table, patterns as <>_LISTEN."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, "README.md has no '## Configuration' section"
    names = set()
    for row in section.group(1).splitlines():
        cells = row.split("|")
        if row.startswith("|") and len(cells) > 2:
            names |= {re.sub(r"<\w+>", HOLE, name) for name in re.findall(r"`([\w<>]+)`", cells[1])}
    return names


def is_documented(name: str, table: set[str]) -> bool:
    """Named in the table, or matched by one of its patterns (`<STAGE>_LISTEN` covers DEPTH_LISTEN)."""
    if name in table:
        return True
    patterns = [re.escape(entry).replace(re.escape(HOLE), "[A-Z0-9_]+") for entry in table if HOLE in entry]
    return HOLE not in name and any(re.fullmatch(pattern, name) for pattern in patterns)


def code_settings() -> dict[str, set[str]]:
    """Every variable the sources read and the keys of stack.env, with where each is read."""
    where: dict[str, set[str]] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in names_read(path.read_text()):
                where.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    for name in read_env_file(STACK_ENV):
        where.setdefault(name, set()).add(str(STACK_ENV.relative_to(ROOT)))
    return where


def test_every_setting_the_code_reads_is_in_the_readme_table() -> None:
    table = documented()
    missing = {name: sorted(files) for name, files in code_settings().items() if not is_documented(name, table)}
    assert not missing, f"add these to README.md's Configuration table: {missing}"


def test_the_scan_sees_every_way_a_variable_is_read() -> None:
    source = """
import os
from os import environ
from renderkit import settings
from renderkit.settings import env_bool, env_str
LIMIT_VAR = "A_LIMIT"
a = env_str("A_STR", "x")
b = settings.env_int(
    "A_INT", 1, minimum=0,
)
c = env_bool(LIMIT_VAR, False)
d = os.environ.get("A_GET", "")
e = os.environ["A_ITEM"]
f = os.getenv("A_GETENV")
os.environ.setdefault("A_DEFAULT", "1")
g = environ.get('A_BARE')
h = env_str(f"{prefix}_LISTEN", "")
i = "A_IN" in os.environ
j = env_str(name, "")  # a parameter: not a name this module chooses
k = {"NOT_READ": "1"}  # written for a child process, not read
"""
    assert names_read(source) == {
        "A_STR",
        "A_INT",
        "A_LIMIT",
        "A_GET",
        "A_ITEM",
        "A_GETENV",
        "A_DEFAULT",
        "A_BARE",
        "<>_LISTEN",
        "A_IN",
    }


def test_patterns_in_the_table_cover_their_instances_only() -> None:
    table = {"<>_LISTEN", "REDIS_URL"}
    assert is_documented("<>_LISTEN", table) and is_documented("DEPTH_LISTEN", table)
    assert not is_documented("DEPTH_ADDR", table) and not is_documented("<>_ADDR", table)


def test_tenant_and_token_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.settings import GatewaySettings

    for name, value in {
        "TENANT_RATE_PER_SECOND": "0",
        "TENANT_BURST": "7",
        "TENANT_CONCURRENCY": "5",
        "TENANT_QUEUE_QUOTA": "9",
        "TENANT_WEIGHT": "2.5",
        "JWT_ISSUER": "https://login.example.com/",
        "JWT_JWKS": "/etc/jwks.json",
        "JWT_AUDIENCE": "render-api",
        "JWT_ALLOW_ADMIN": "true",
        "API_KEY_CACHE_SECONDS": "0.5",
    }.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings.from_env()
    limits = settings.tenant_defaults
    assert (limits.rate_per_s, limits.burst, limits.concurrency, limits.queue_quota, limits.weight) == (0, 7, 5, 9, 2.5)
    assert settings.jwt.enabled and settings.jwt.issuer == "https://login.example.com/"
    assert settings.jwt.audience == "render-api" and settings.jwt.allow_admin
    assert settings.api_key_cache_s == 0.5
