"""syncer-client (clients/python): its sources, version, dependencies and lock stay in step."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import syncer
import syncer.client

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
CLIENT_PROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
WORKER_PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CLIENT_LOCK = ROOT / "requirements" / "client.txt"


def _shipped_modules() -> list[Path]:
    """The .py files the client distribution ships, through its links into syncer/."""
    return sorted(p.resolve() for p in (CLIENT / "syncer").rglob("*.py"))


def test_the_client_ships_syncer_client_and_its_two_import_paths_through_links() -> None:
    """clients/python/syncer links to the real sources: one copy of the code, never two."""
    links = sorted(p.name for p in (CLIENT / "syncer").iterdir() if p.is_symlink())
    assert links == ["cachefill.py", "client", "freshness.py"]
    assert (CLIENT / "syncer" / "client").resolve() == ROOT / "syncer" / "client"
    assert not (CLIENT / "syncer" / "__init__.py").exists()  # a namespace package here
    assert (ROOT / "syncer" / "client" / "py.typed").exists()
    assert (CLIENT / "syncer" / "py.typed").exists()


def test_the_client_modules_import_only_the_standard_library_redis_and_themselves() -> None:
    """What the distribution declares (redis) is all its modules need."""
    allowed = {"redis", "syncer"}
    foreign = []
    for path in _shipped_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                other_syncer = top == "syncer" and not name.startswith("syncer.client")
                if other_syncer or (top not in allowed and top not in sys.stdlib_module_names):
                    foreign.append(f"{path.name}: {name}")
    assert foreign == []


def test_the_client_depends_on_redis_alone_within_the_workers_range() -> None:
    """One dependency, and one the worker also accepts: a service may run either."""
    client = [Requirement(text) for text in CLIENT_PROJECT["dependencies"]]
    worker = {
        canonicalize_name(Requirement(t).name): Requirement(t)
        for t in WORKER_PROJECT["dependencies"]
    }
    assert [canonicalize_name(r.name) for r in client] == ["redis"]
    assert client[0].specifier == worker["redis"].specifier


def test_both_distributions_have_one_version() -> None:
    """syncer and syncer-client are released together, at the same version."""
    assert syncer.client.__version__ == syncer.__version__ == WORKER_PROJECT["version"]
    assert CLIENT_PROJECT["dynamic"] == ["version"]


def test_the_client_lock_pins_redis_with_hashes_and_nothing_of_the_worker() -> None:
    """requirements/client.txt holds redis (and its own dependencies), every pin hashed."""
    text = CLIENT_LOCK.read_text()
    pins = [
        line.split("==")[0]
        for line in text.splitlines()
        if "==" in line and not line.startswith(" ")
    ]
    assert "redis" in pins
    assert not {"boto3", "botocore", "pybreaker", "tenacity", "opensearch-py", "orjson"} & set(pins)
    hashed = text.count("==") <= text.count("--hash=sha256:")
    assert hashed
    assert "make lock" in text
