"""The locks pin, with hashes, every distribution pyproject.toml asks for, and the installs use them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_LOCK = ROOT / "requirements" / "dev.txt"
LAMBDA_LOCK = ROOT / "requirements" / "lambda.txt"
RUNTIME_LOCK = ROOT / "requirements" / "lambda-runtime.txt"
STALE = "the lock no longer satisfies pyproject.toml: run `make lock` (README, Updating the locks)"
# "name==version \" opening one entry; its hashes follow on indented lines.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _entries(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """Each locked distribution: canonical name -> (version, hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in lock.read_text().splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonicalize_name(pin.group(1))
            entries[current] = (pin.group(2), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            entries[current][1].append(line.strip().removesuffix("\\").strip())
    return entries


def _requirements(*groups: list[str]) -> list[Requirement]:
    return [Requirement(text) for group in groups for text in group]


def _unsatisfied(lock: Path, requirements: list[Requirement]) -> list[str]:
    """The requirements that the lock has no pin for, or pins outside the allowed range."""
    entries = _entries(lock)
    wrong = []
    for requirement in requirements:
        pinned = entries.get(canonicalize_name(requirement.name))
        if pinned is None:
            wrong.append(f"{requirement}: not in {lock.name}")
        elif not requirement.specifier.contains(pinned[0], prereleases=True):
            wrong.append(f"{requirement}: {lock.name} pins {pinned[0]}")
    return wrong


def test_the_dev_lock_pins_every_dependency_dev_extra_and_build_requirement_within_its_range() -> (
    None
):
    """requirements/dev.txt satisfies pyproject's dependencies, its dev extra and build-system."""
    project = PYPROJECT["project"]
    requirements = _requirements(
        project["dependencies"],
        project["optional-dependencies"]["dev"],
        PYPROJECT["build-system"]["requires"],
    )
    assert _unsatisfied(DEV_LOCK, requirements) == [], STALE


def test_the_lambda_lock_pins_every_runtime_dependency_within_its_range() -> None:
    """requirements/lambda.txt satisfies pyproject's runtime dependencies (no dev extra)."""
    requirements = _requirements(PYPROJECT["project"]["dependencies"])
    assert _unsatisfied(LAMBDA_LOCK, requirements) == [], STALE


def test_the_lambda_lock_holds_no_dev_tool() -> None:
    """The package's lock is resolved from the runtime dependencies alone: no test tool in it."""
    dev_only = {
        canonicalize_name(r.name)
        for r in _requirements(PYPROJECT["project"]["optional-dependencies"]["dev"])
    }
    assert dev_only & set(_entries(LAMBDA_LOCK)) == set()


@pytest.mark.parametrize("lock", [DEV_LOCK, LAMBDA_LOCK, RUNTIME_LOCK], ids=lambda p: p.name)
def test_every_pin_is_exact_and_carries_hashes(lock: Path) -> None:
    """Every entry of a lock is one exact version with at least one sha256 hash."""
    entries = _entries(lock)
    assert entries, f"{lock} pins nothing"
    assert [name for name, (_, hashes) in entries.items() if not hashes] == []


def test_the_ranges_in_pyproject_stay_ranges() -> None:
    """The library does not pin its users: pyproject.toml's dependencies are ranges, not pins."""
    project = PYPROJECT["project"]
    pinned = [
        str(r)
        for r in _requirements(project["dependencies"], project["optional-dependencies"]["dev"])
        if any(spec.operator in ("==", "===") for spec in r.specifier)
    ]
    assert pinned == []


def test_make_install_installs_the_dev_lock_with_hashes_and_the_project_without_dependencies() -> (
    None
):
    """`make install` (and so `make test` and CI) takes every distribution from the hashed lock."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes -r requirements/dev.txt" in recipe
    assert "--no-deps --no-build-isolation -e ." in recipe
    assert not re.search(r"pip install[^\n]*-e '?\.\[dev\]", recipe)


def test_the_lambda_package_installs_its_dependencies_from_the_lock_with_hashes() -> None:
    """scripts/package_lambda.sh installs requirements/lambda.txt with --require-hashes."""
    script = (ROOT / "scripts" / "package_lambda.sh").read_text()
    assert "SOURCE_LOCK=${SYNCER_LAMBDA_LOCK:-requirements/lambda.txt}" in script
    assert "--require-hashes" in script
    assert "--dry-run" not in script, "the package must not resolve versions of its own"


def test_the_first_install_shows_progress() -> None:
    """The first `make install` says what it installs and lets pip print each download."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    lock_install = next(
        line
        for line in recipe.splitlines()
        if "requirements/dev.txt" in line and "pip install" in line
    )
    assert "--quiet" not in lock_install
    assert " -q" not in lock_install
    assert re.search(r"@echo \"installing .*the first time", recipe)
