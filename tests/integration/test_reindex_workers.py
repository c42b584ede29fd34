"""`syncer reindex --workers N` and `--export`: every option works or is refused, and killing
the parent stops its workers (issue 24, item 4: defects 8 and 13), on the real services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.sinks.build import aws_client
from tests.exportfiles import full_line, split, write_export
from tests.integration.conftest import OPENSEARCH_URL, Stack, wait_until, write_config
from tests.integration.faults import opensearch_proxy
from tests.integration.routed_catalog import (
    RoutedCatalog,
    category,
    product,
    review,
    routed_catalog,
)
from tests.integration.test_reindex_arguments import _created, _reindex

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_type: str
) -> Iterator[RoutedCatalog]:
    yield from routed_catalog(tmp_path, monkeypatch, view_type)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--workers", "2", "--delete-old"], "--delete-old"),
        (["--workers", "2", "--delete-grace-s", "5"], "--delete-grace-s"),
        (["--workers", "2", "--page-size", "0"], "page size"),
        (["--workers", "2", "--index", "no-such-index"], "no-such-index"),
        (["--export", "s3://b/x", "--segments", "8"], "--segments"),
        (["--export", "s3://b/x", "--delete-old"], "--delete-old"),
        (["--abandon", "--workers", "2"], "--workers"),
        (["--abandon", "--export", "s3://b/x"], "--export"),
    ],
)
def test_an_option_a_reindex_would_ignore_is_refused_before_anything_is_created(
    stack: Stack, tmp_path: Path, options: list[str], named: str
) -> None:
    """Each option either works with --workers / --export / --abandon or is refused by name."""
    # given a table with an item
    stack.put({"pk": {"S": "a"}, "sk": {"S": "v1"}, "category": {"S": "shoes"}})
    stack.deliver()
    # when reindex runs with the combination
    code, output = _reindex(stack, tmp_path / "s.json", *options)
    # then it fails naming the option, and nothing was created
    assert code != 0, output
    assert named in output
    assert _created(stack) == (False, False)


def test_a_scan_in_workers_rebuilds_only_the_index_given(
    catalog: RoutedCatalog, tmp_path: Path
) -> None:
    """`reindex --index I --workers 2` rebuilds I only; the other routes keep their index."""
    # given the routed catalog synced
    for item in (product("1"), product("2"), review("1", 1), category("shoes")):
        catalog.stack.put(item)
    catalog.stack.deliver()
    reviews, products = f"{catalog.prefix}-reviews", f"{catalog.prefix}-products"
    # when only the reviews index is rebuilt by a scan in two worker processes
    code, output = _reindex(
        catalog.stack,
        tmp_path / "s.json",
        "--index",
        reviews,
        "--workers",
        "2",
        "--segments",
        "2",
        "--page-size",
        "1",
    )
    # then reviews moved to a new index, products did not, and both hold their entities
    assert code == 0, output
    assert "0 absent from the scan, kept as tombstones" in output
    client = catalog.stack.sinks.opensearch
    assert sorted(client.indices.get_alias(name=reviews)) == [f"{reviews}-000002"]
    assert sorted(client.indices.get_alias(name=products)) == [f"{products}-000001"]
    assert not client.indices.exists(index=f"{products}-000002")
    catalog.assert_converged()


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _pool_workers(pid: int) -> set[int]:
    """The children of ``pid`` that are multiprocessing's spawned workers (not its tracker)."""
    found = set()
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.add(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_killing_the_parent_stops_its_workers(stack: Stack, tmp_path: Path) -> None:
    """SIGKILL of a process running work items in its pool: the workers end too, mid-item."""
    # given a parent whose two workers are each in the middle of a long work item
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.integration.orphan_workers import main; main()",
            str(stack.config_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    workers: set[int] = set()
    try:
        assert parent.stdout is not None
        started = [parent.stdout.readline() for _ in range(2)]
        workers = {int(line.split()[1]) for line in started}
        assert workers <= _children(parent.pid)
        # when the parent is killed
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        # then its workers end within seconds, long before their items would have
        wait_until(lambda: not any(_alive(pid) for pid in workers), timeout_s=5.0)
    finally:
        parent.kill()
        for pid in workers:  # orphans of a failed run, reparented: ended by pid
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_of_reindex_export_with_two_workers_stops_the_workers(
    stack: Stack, tmp_path: Path
) -> None:
    """`syncer reindex --export --workers 2` killed while its workers' writes hang: they end."""
    # given an export of the table, and the command's OpenSearch behind a proxy
    for number in range(20):
        stack.put({"pk": {"S": f"k{number}"}, "sk": {"S": "v1"}, "category": {"S": "shoes"}})
    stack.deliver()
    s3 = aws_client("s3")
    bucket = f"workers-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    pages = stack.dynamodb.get_paginator("scan").paginate(TableName=stack.table)
    lines = [full_line(item) for page in pages for item in page["Items"]]
    export = write_export(s3, bucket, split(lines, 2), table=stack.table)
    with opensearch_proxy(OPENSEARCH_URL) as proxy:
        opensearch = f'[opensearch]\nurl = "{proxy.url}"\ntimeout_s = 120\n'
        config = write_config(
            tmp_path / "proxied.toml", stack.table, stack.index, opensearch=opensearch
        )
        command = [sys.executable, "-m", "syncer.cli", "reindex", "--config", str(config)]
        options = ["--table", stack.table, "--export", export.uri, "--workers", "2"]
        parent = subprocess.Popen(
            [*command, *options],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers: set[int] = set()
        try:
            # when both workers run and their OpenSearch requests hang
            wait_until(lambda: len(_pool_workers(parent.pid)) == 2, timeout_s=60.0)
            workers = _pool_workers(parent.pid)
            proxy.stall_s, proxy.mode = 120.0, "stall"
            wait_until(lambda: proxy.injected["stall"] >= 1, timeout_s=60.0)
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=10)
            # then the workers end within seconds, not when their requests would time out
            wait_until(lambda: not any(_alive(pid) for pid in workers), timeout_s=5.0)
        finally:
            parent.kill()
            for pid in workers:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            proxy.mode = "pass"
