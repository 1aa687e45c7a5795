"""Packaging: a plain (non-editable) wheel carries the code, migrations, templates and the console script.

The wheel is built from a copy of the checkout, so a stale `build/` directory cannot hide a file the
package configuration forgets, and the checkout is not touched.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import receiver

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    ".venv",
    ".ci-venv",
    "venv",
    "node_modules",
    "test-artifacts",
)


def run(
    args: list[str], *, timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src, out = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    if importlib.util.find_spec("build") is not None:
        run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)], timeout=180)
    else:
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src)], timeout=180)
    wheels = list(out.glob("receiver-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked, as `pip install --no-deps --target` would lay it out."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def dist_info(names: set[str]) -> str:
    dirs = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    assert len(dirs) == 1, dirs
    return dirs.pop()


def test_wheel_has_every_module(names: set[str]) -> None:
    sources = (ROOT / "receiver").rglob("*.py")
    modules = {p.relative_to(ROOT).as_posix() for p in sources if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"the wheel lacks modules (packages missing from pyproject?): {missing}"
    assert not any(n.startswith("tests/") for n in names), "tests are not part of the package"
    stray = sorted(n for n in names if not n.startswith(("receiver/", dist_info(names) + "/")))
    assert not stray, f"unexpected top-level files in the wheel: {stray}"


def test_wheel_has_migrations_with_rollbacks(names: set[str]) -> None:
    shipped = sorted(n.removeprefix("receiver/migrations/") for n in names if n.startswith("receiver/migrations/"))
    source = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert source and [s for s in shipped if s.endswith(".sql")] == source
    forward = [s for s in shipped if s.endswith(".sql") and not s.endswith(".rollback.sql")]
    assert forward
    for name in forward:
        assert name.replace(".sql", ".rollback.sql") in shipped, f"{name} ships without its rollback"


def test_wheel_has_templates_static_and_queries(names: set[str]) -> None:
    html = sorted(p.name for p in (ROOT / "templates").glob("*.html"))
    assert html
    for name in html:
        assert f"receiver/templates/{name}" in names
    assert "receiver/templates/static/receiver.css" in names
    for path in (ROOT / "templates" / "static").iterdir():
        assert f"receiver/templates/static/{path.name}" in names
    assert "receiver/store/queries.sql" in names


def test_wheel_metadata_and_console_script(wheel: Path, names: set[str]) -> None:
    info = dist_info(names)
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser.has_section("console_scripts"), entry_points
    assert parser.get("console_scripts", "receiver").strip() == "receiver.cli:main"
    assert f"\nVersion: {receiver.__version__}\n" in metadata


def test_unpacked_wheel_imports_and_runs(site: Path, tmp_path: Path) -> None:
    """Every module imports from the wheel alone, the resources resolve inside it, and the entry point runs."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PYTHONSAFEPATH", None)
    check = f"""
import importlib, importlib.metadata, pkgutil, sys
from pathlib import Path
site = Path({str(site)!r}).resolve()
import receiver
assert Path(receiver.__file__).resolve().is_relative_to(site), receiver.__file__
for m in pkgutil.walk_packages(receiver.__path__, "receiver."):
    if m.name != "receiver.__main__":
        importlib.import_module(m.name)
from receiver.database import migration_ids, resource_dir
for name in ("migrations", "templates"):
    found = resource_dir(name)
    assert found.is_dir() and found.resolve() == site / "receiver" / name, f"resource_dir({{name!r}}) -> {{found}}"
assert (resource_dir("templates") / "static" / "receiver.css").is_file()
print(",".join(migration_ids()))
dist = importlib.metadata.distribution("receiver")
(ep,) = [e for e in dist.entry_points if e.group == "console_scripts" and e.name == "receiver"]
sys.argv = ["receiver", "--version"]
ep.load()()
"""
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr  # argparse's version action exits 0
    ids, version = result.stdout.strip().splitlines()
    source_ids = sorted(p.stem for p in (ROOT / "migrations").glob("*.sql") if not p.stem.endswith(".rollback"))
    assert ids.split(",") == source_ids
    assert version == f"receiver {receiver.__version__}"

    help_ = run([sys.executable, "-m", "receiver", "--help"], cwd=tmp_path, env=env)
    assert "serve" in help_.stdout


def test_python_m_receiver_help_and_version() -> None:
    help_ = run([sys.executable, "-m", "receiver", "--help"], cwd=ROOT)
    for command in ("serve", "migrate", "check-config", "explain"):
        assert command in help_.stdout
    serve = run([sys.executable, "-m", "receiver", "serve", "--help"], cwd=ROOT)
    for option in ("--config", "--host", "--port", "--data-dir", "--no-migrate"):
        assert option in serve.stdout
    version = run([sys.executable, "-m", "receiver", "--version"], cwd=ROOT)
    assert version.stdout.strip() == f"receiver {receiver.__version__}"


def test_console_script_version() -> None:
    """`receiver --version` through the installed console script, when this environment has one."""
    script = Path(sys.executable).with_name("receiver")
    if not script.exists():
        pytest.skip("receiver is not installed in this environment (run from a checkout)")
    version = run([str(script), "--version"])
    assert version.stdout.strip() == f"receiver {receiver.__version__}"
