"""The wheel installs one top-level package, ``phonepatch``, and the ``phonepatch`` command runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300
# Left behind by builds, editable installs and test runs; none of it belongs in a wheel.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".hypothesis", "__pycache__", ".pytest_cache",
    ".benchmarks",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """Build the wheel from a copy of the repository, so ``build/`` and ``*.egg-info`` land there.

    The build is isolated: pyproject asks for ``setuptools>=69`` and ``wheel``, which the
    environment need not have (``--no-isolation`` fails on setuptools 65 without ``wheel``); pip
    installs them into the build environment exactly as ``pip install -e .`` does.
    """
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [built] = out.glob("phonepatch-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.timeout(BUILD_TIMEOUT_S)
class TestWheel:
    def test_only_top_level_package_is_phonepatch(self, wheel: zipfile.ZipFile) -> None:
        top_level = {
            name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")
        }
        assert top_level == {"phonepatch"}

    @pytest.mark.parametrize(
        "module",
        [
            "phonepatch/shared/matching.py",
            "phonepatch/shared/config.py",
            "phonepatch/shared/protocol/twilio_media.py",
            "phonepatch/services/cli.py",
            "phonepatch/services/__main__.py",
        ],
    )
    def test_contains_module(self, wheel: zipfile.ZipFile, module: str) -> None:
        assert module in wheel.namelist()

    def test_every_source_package_is_shipped(self, wheel: zipfile.ZipFile) -> None:
        """A subpackage missing from pyproject's package list would install as a broken import."""
        names = set(wheel.namelist())
        for folder, prefix in (("shared", "phonepatch/shared"), ("services", "phonepatch/services")):
            for init in (ROOT / folder).rglob("__init__.py"):
                relative = init.relative_to(ROOT / folder).as_posix()
                assert f"{prefix}/{relative}" in names

    def test_declares_the_phonepatch_console_script(self, wheel: zipfile.ZipFile) -> None:
        [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        lines = [line.strip() for line in wheel.read(entry_points).decode().splitlines()]
        section = lines[lines.index("[console_scripts]") + 1 :]
        assert "phonepatch = phonepatch.services.cli:main" in section

    def test_ships_no_tests(self, wheel: zipfile.ZipFile) -> None:
        assert not [name for name in wheel.namelist() if "tests/" in name or "/test_" in name]


class TestConsoleScript:
    def test_help_lists_serve(self) -> None:
        script = Path(sysconfig.get_path("scripts")) / "phonepatch"
        result = subprocess.run(
            [str(script), "--help"], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "serve" in result.stdout
