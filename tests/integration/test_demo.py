"""`syncer demo` on the real services: search finds readable titles, the cache and the tombstone
show the change, and nothing prints a deprecation warning."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import pytest
import redis

from syncer.config import load_config
from syncer.demo import DemoReport, demo_table, run_demo
from syncer.sinks.build import aws_client, build_sinks
from tests.integration.conftest import REDIS_URL, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoReport, list[str]]]:
    """One run of the demo under its own table name, its output and its warnings recorded."""
    name = f"syncer-demo-test-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path_factory.mktemp("demo") / "syncer.toml", "unused", "unused")
    config = load_config(str(path))
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # opensearch-py turns Warning headers into warnings
        report = run_demo(config, 20, lines.append, table_name=name)
    lines += [f"WARNING {w.category.__name__}: {w.message}" for w in caught]
    yield report, lines
    sinks = build_sinks(load_config(str(path)))
    try:
        for route in demo_table(name).resolved_routes:
            sinks.opensearch.indices.delete(index=f"{route.index}-*", ignore_unavailable=True)
            sinks.opensearch.indices.delete_index_template(name=f"syncer-{route.index}", ignore=404)
    finally:
        sinks.close()
    aws_client("dynamodb").delete_table(TableName=name)
    client = redis.Redis.from_url(REDIS_URL)
    client.unlink("product:PRODUCT#sku-0001", "product:PRODUCT#sku-0004")
    client.close()


def test_full_text_search_returns_readable_titles(demo_run: tuple[DemoReport, list[str]]) -> None:
    """A full-text query finds products by words of their names and prints those names."""
    report, lines = demo_run
    assert report.full_text_titles[0] == "Leather belt bag"
    assert "Leather ankle boot" in report.full_text_titles
    assert any("full text 'leather bag': Leather belt bag (bags, 4.99)" in line for line in lines)
    assert not any("\\#" in line for line in lines)  # no escaped document ids as "results"


def test_a_cached_product_key_is_gone_after_its_change_and_the_untouched_one_stays(
    demo_run: tuple[DemoReport, list[str]],
) -> None:
    """The changed product's key was cached before the change and is gone after; the other stays."""
    report, lines = demo_run
    moved, untouched = "product:PRODUCT#sku-0001", "product:PRODUCT#sku-0004"
    assert report.cached_before == {moved: True, untouched: True}
    assert report.cached_after == {moved: False, untouched: True}
    assert f"   {moved} (changed): cached before the change; now absent" in lines
    assert any(line.startswith(f"   {untouched} (not changed): cached before") for line in lines)


def test_a_deleted_item_is_missing_from_search_while_its_tombstone_is_indexed(
    demo_run: tuple[DemoReport, list[str]],
) -> None:
    """Search through the alias misses the deleted product; the index behind it has its tombstone."""
    report, _ = demo_run
    assert report.deleted_title == "Leather tote bag"
    assert report.deleted_hits == 0
    assert report.deleted_title not in report.full_text_titles
    assert report.tombstone is not None
    assert report.tombstone["_syncer"]["deleted"] is True


def test_the_demo_prints_no_deprecation_warning(demo_run: tuple[DemoReport, list[str]]) -> None:
    """No OpenSearch Warning header (such as sorting on _id) nor Python warning during the demo."""
    _, lines = demo_run
    assert [line for line in lines if line.startswith("WARNING")] == []
