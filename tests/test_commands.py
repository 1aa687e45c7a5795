"""The README's two commands are the ones that work: CI runs the test command verbatim, and both stand alone.

A newcomer copies the Quick start's two commands as written; CI (`.ci/run`) must run the very same test
command, so a change to one without the other fails here. The commands were also run verbatim in a fresh
clone (see the README); these tests keep them from drifting.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    """The shell blocks of the README's Quick start section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def ci_command() -> str:
    """The last command `.ci/run` runs (its last line that is neither blank nor a comment)."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")][-1]


def test_quick_start_has_the_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    serve, test = commands
    assert serve.endswith(".venv/bin/receiver serve"), serve
    assert test.endswith(".venv/bin/pytest"), test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = quick_start_commands()
    assert shlex.split(ci_command()) == shlex.split(test)
    assert ci_command() == test


@pytest.mark.parametrize("which", [0, 1], ids=["serve", "test"])
def test_commands_work_on_an_externally_managed_python(which: int) -> None:
    """Debian's and Ubuntu's system Python refuse a bare `pip install` (PEP 668): every step of both commands
    makes or uses the virtual environment, and neither relies on an activated one."""
    steps = [shlex.split(step) for step in quick_start_commands()[which].split("&&")]
    assert steps[0] == ["python3", "-m", "venv", ".venv"]
    for step in steps[1:]:
        assert step[0].startswith(".venv/bin/"), step


def test_the_test_command_takes_the_project_options() -> None:
    """`pytest` is run without arguments, so pyproject.toml's options apply, among them native tracebacks:
    CPython before 3.11.8 (and 3.12.0-3.12.1) can raise SystemError from ast.parse under a garbage
    collection (gh-106905), and pytest's long tracebacks parse the failing test's source, which aborted a
    whole run with INTERNALERROR."""
    _, test = quick_start_commands()
    assert shlex.split(test.split("&&")[-1]) == [".venv/bin/pytest"]
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--tb=native" in shlex.split(options["addopts"])


def test_the_virtualenv_is_not_committed() -> None:
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is missing")
def test_ci_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_says_how_to_scale_the_suites_deadlines() -> None:
    readme = (ROOT / "README.md").read_text()
    development = readme.split("\n## Development\n", 1)[1].split("\n## ", 1)[0]
    assert "RECEIVER_TEST_TIME_SCALE" in development
    assert "RECEIVER_TEST_TIME_SCALE" in (ROOT / "tests" / "helpers.py").read_text()
