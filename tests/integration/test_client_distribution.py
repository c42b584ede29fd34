"""syncer-client builds, installs in a fresh venv holding only its locked dependencies, and works.

The venv gets requirements/client.txt (hash-checked, from PyPI) and the wheel built from
clients/python, nothing else: no boto3, pybreaker, tenacity, opensearch-py or worker code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import REDIS_URL, REPO_ROOT

pytestmark = pytest.mark.integration

# What the worker needs and a reader of the cache must not have to install.
WORKER_ONLY = ("boto3", "botocore", "pybreaker", "tenacity", "opensearchpy", "orjson", "click")

SMOKE = textwrap.dedent(
    """
    import asyncio, importlib.util, sys, uuid, warnings

    import redis
    from syncer.client.cachefill import AsyncLeasedCache, LeasedCache, decode_entry
    from syncer.freshness import AttributeEquals, Deleted, wait_until_visible

    worker_only = sys.argv[2].split(",")
    present = [name for name in worker_only if importlib.util.find_spec(name) is not None]
    assert present == [], f"worker dependencies in the client venv: {present}"
    assert importlib.util.find_spec("syncer.sinks") is None, "the worker is installed"

    client = redis.Redis.from_url(sys.argv[1])
    cache = LeasedCache(client)
    key = f"client-dist:{uuid.uuid4().hex}"
    try:
        assert cache.get_or_fill(key, lambda: b"loaded") == b"loaded"
        assert cache.get_or_fill(key, lambda: b"not again") == b"loaded"
        assert decode_entry(client.get(key)).value == b"loaded"
    finally:
        client.unlink(key)
    try:
        wait_until_visible(object(), "catalog", "p1", Deleted())
    except TypeError as error:
        assert "client must be" in str(error)
    else:
        raise AssertionError("a bad client was accepted")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from syncer.cachefill import LeasedCache as Old
    assert Old is LeasedCache
    assert "syncer.client.cachefill" in str(caught[0].message)
    print("client ok")
    """
)

TYPED_USE = textwrap.dedent(
    """
    import redis
    from syncer.client.cachefill import LeasedCache
    from syncer.freshness import Visibility, WrittenAt, wait_until_visible

    cache = LeasedCache(redis.Redis())
    value: bytes | None = cache.get_or_fill("k", lambda: b"v", ttl_s=30)
    seen: Visibility = wait_until_visible(object(), "i", "d", WrittenAt(1_780_000_000_000))
    cache.get_or_fill(42, lambda: b"v")
    """
)


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with requirements/client.txt and the syncer-client wheel, built as make does."""
    work = tmp_path_factory.mktemp("client-dist")
    source = work / "src"
    shutil.copytree(REPO_ROOT / "clients" / "python", source, symlinks=False)
    for cache in source.rglob("__pycache__"):
        shutil.rmtree(cache)
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", work / "wheel", source,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "wheel").glob("syncer_client-*.whl")
    venv = work / "venv"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    locked = _run(
        python, "-m", "pip", "install", "--quiet", "--require-hashes",
        "-r", REPO_ROOT / "requirements" / "client.txt",
    )  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    installed = _run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel)
    assert installed.returncode == 0, installed.stderr
    return python


def test_the_client_venv_holds_only_the_client_and_its_locked_dependencies(
    client_venv: Path,
) -> None:
    """pip check passes with the wheel's own requirements met by the lock, and nothing else."""
    check = _run(client_venv, "-m", "pip", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    listed = _run(client_venv, "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert names - {"pip", "setuptools"} == {"redis", "syncer-client"}


def test_the_client_imports_and_works_without_the_worker(client_venv: Path) -> None:
    """LeasedCache fills the real Redis; freshness checks its arguments; the old path warns."""
    smoke = _run(client_venv, "-c", SMOKE, REDIS_URL, ",".join(WORKER_ONLY), cwd=client_venv.parent)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert smoke.stdout.strip() == "client ok"


def test_the_client_is_typed_for_its_users(client_venv: Path, tmp_path: Path) -> None:
    """mypy --strict reads the installed package's types (py.typed): a wrong key type is found."""
    use = tmp_path / "use_client.py"
    use.write_text(TYPED_USE)
    mypy = Path(sys.executable).parent / "mypy"
    checked = _run(
        mypy, "--strict", "--no-incremental", "--python-executable", client_venv, use,
        cwd=tmp_path,
    )  # fmt: skip
    lines = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(lines) == 1, checked.stdout + checked.stderr
    assert 'Argument 1 to "get_or_fill" of "LeasedCache" has incompatible type "int"' in lines[0]
