"""Pure modules import no I/O or clock, and nothing under ``shared/`` reads the environment.

STYLE.md (Layout, Configuration): ``shared/protocol`` and the matcher import no aiohttp, redis,
asyncio or clock, and only ``services`` reads the environment. Sources are parsed, not imported,
so a forbidden import is found even where it sits in a branch that never runs here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import phonepatch.shared

SHARED = Path(phonepatch.shared.__file__).parent
FORBIDDEN = frozenset({"aiohttp", "redis", "asyncio", "websockets", "time", "datetime", "socket"})
PURE_MODULES = sorted(
    [*SHARED.joinpath("protocol").rglob("*.py"), SHARED / "matching.py", SHARED / "keypad.py",
     SHARED / "speech.py"]
)
SHARED_MODULES = sorted(SHARED.rglob("*.py"))


def module_id(path: Path) -> str:
    return path.relative_to(SHARED).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def top_level_imports(tree: ast.Module) -> set[str]:
    """First component of every absolute import, ``import x.y`` and ``from x.y import z`` alike."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def environment_reads(tree: ast.Module) -> list[str]:
    """Where ``os.environ``/``os.getenv`` or a bare ``environ``/``getenv`` from ``os`` is used."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "environb", "getenv", "getenvb"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            found.append(f"line {node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [
                f"line {node.lineno}: from os import {alias.name}"
                for alias in node.names
                if alias.name in {"environ", "environb", "getenv", "getenvb", "*"}
            ]
    return found


def test_the_pure_module_list_covers_the_codecs() -> None:
    """Guards the walk itself: a moved package would otherwise make the parametrised checks vanish."""
    names = {module_id(path) for path in PURE_MODULES}
    assert {"protocol/__init__.py", "protocol/game_v0.py", "protocol/twilio_media.py",
            "protocol/deepgram.py", "matching.py", "keypad.py", "speech.py"} <= names
    assert all(path.is_file() for path in PURE_MODULES)


class TestPureModules:
    @pytest.mark.parametrize("path", PURE_MODULES, ids=module_id)
    def test_imports_no_io_or_clock(self, path: Path) -> None:
        assert not top_level_imports(parse(path)) & FORBIDDEN

    def test_check_catches_both_import_forms(self) -> None:
        tree = ast.parse("import asyncio.tasks\nfrom time import monotonic\nfrom . import speech\n")
        assert top_level_imports(tree) & FORBIDDEN == {"asyncio", "time"}


class TestNoEnvironmentInShared:
    @pytest.mark.parametrize("path", SHARED_MODULES, ids=module_id)
    def test_module_reads_no_environment(self, path: Path) -> None:
        assert environment_reads(parse(path)) == []

    def test_check_catches_each_form(self) -> None:
        tree = ast.parse(
            "import os\nfrom os import getenv\nos.environ['A']\nos.getenv('B')\nos.environ.get('C')\n"
        )
        assert len(environment_reads(tree)) == 4
