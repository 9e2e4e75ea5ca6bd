"""The repo root is the package ``agentlog``: the packaging must say exactly that."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_PACKAGES = {"tests", "bench", "docs", "examples", "build", "dist"}


def declared_packages() -> set[str]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"agentlog": "."}
    return set(setuptools["packages"])


def package_folders() -> set[str]:
    """Every folder holding Python modules, as the dotted name it gets under agentlog."""
    found = {"agentlog"}
    for module in ROOT.rglob("*.py"):
        parts = module.relative_to(ROOT).parent.parts
        if parts and parts[0] not in NOT_PACKAGES and not parts[0].startswith("."):
            found.add(".".join(("agentlog", *parts)))
    return found


def test_packages_list_matches_the_folders_on_disk() -> None:
    assert declared_packages() == package_folders()


def test_every_subpackage_is_marked_typed() -> None:
    for package in declared_packages() - {"agentlog"}:
        folder = ROOT.joinpath(*package.split(".")[1:])
        assert (folder / "py.typed").exists(), package
        assert (folder / "__init__.py").exists(), package


@pytest.mark.slow
def test_pip_install_gives_a_working_agentlog_command(tmp_path: Path) -> None:
    """Install a built wheel (not editable) into a fresh venv and use it elsewhere."""
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    target_pip = [str(env_dir / "bin" / "python"), "-m", "pip", "-q"]
    wheel = next(wheels.glob("agentlog-*.whl"))
    subprocess.run([*target_pip, "install", "--no-deps", str(wheel)], check=True)
    # Dependencies come from this test environment: no network needed for them.
    site = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def agentlog(*args: str) -> str:
        done = subprocess.run(
            [str(env_dir / "bin" / "agentlog"), *args],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    agent_id = agentlog("new", "--name", "installed", "--goal", "prove it").strip()
    assert "installed" in agentlog("show", agent_id)
    assert "TaskStarted" in agentlog("log", agent_id)
    assert (elsewhere / ".agentlog" / "agentlog.db").exists()
    location = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import agentlog.domain as d; print(d.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert location.startswith(site)
