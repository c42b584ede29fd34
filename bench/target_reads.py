"""Where OpenSearch's time goes when syncer reads the indexed state of existing documents.

Before every write that is not an INSERT, syncer reads each target's ``_syncer`` (its version),
the fields its cache keys need, ``_seq_no`` and ``_primary_term``. This script asks the same
question of one index in several ways and prints, per request of ``--docs`` existing ~1 KB
catalog documents, the wall time and OpenSearch's own time from the index's ``_stats`` (get
time for ``_mget``, query + fetch time for a search):

* ``_mget`` with ``_source_includes`` (syncer before issue 27), realtime and not;
* ``_mget`` of the whole ``_source`` (no filtering);
* ``_mget`` trimmed by ``filter_path`` (syncer now: ``sinks.search.reads.target_filter``);
* ``_mget`` of stored fields (the ``_syncer`` fields mapped with ``store: true``);
* an ``ids`` search with ``docvalue_fields`` and ``seq_no_primary_term`` (not realtime).

Each variant is measured on documents refreshed since their last write ("refreshed") and on
documents written since the last refresh ("written since refresh", a hot key's next batch). The
variants take turns, ``--repeats`` times, on random documents; read the ranges (shared machine).

    .venv/bin/python bench/target_reads.py [--docs 800] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OPENSEARCH_URL, ROOT, catalog_item, header

INDEX = f"bench-target-reads-{os.getpid()}"
DOCUMENTS = 14_000
CACHE_FIELDS = ("pk", "sk", "category")  # what bench/common.py's cache keys render from
VERSION_FIELDS = ("seq", "stream", "changed_at", "deleted")


def _document(number: int, revision: int) -> dict[str, Any]:
    """A catalog item as syncer indexes it: plain values and its ``_syncer`` version."""
    from syncer.core import jsoncodec
    from syncer.core.attributes import decode_item

    item = decode_item(catalog_item(number, random.Random(number * 1000 + revision)))
    item.pop("cost", None)
    document: dict[str, Any] = jsoncodec.loads(jsoncodec.dumps(item))
    document["_syncer"] = {
        "table": "bench",
        "seq": str(3 * 10**20 + number * 100 + revision),
        "stream": 1704067200000,
        "changed_at": 1704067200000 + revision,
        "deleted": False,
    }
    return document


def _create_index(client: Any) -> None:
    template = json.loads((ROOT / "index_templates" / "default.json").read_text())["template"]
    mappings = template["mappings"]
    syncer_fields = mappings["properties"]["_syncer"]["properties"]
    syncer_fields["stream"] = {"type": "long"}
    for field in syncer_fields.values():
        field["store"] = True  # only for the stored-fields variant; the others ignore it
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}
    client.indices.create(index=INDEX, body={"settings": settings, "mappings": mappings})


def _server_ms(client: Any) -> tuple[float, float]:
    stats = client.indices.stats(index=INDEX, metric="get,search")["_all"]["primaries"]
    search = stats["search"]
    return (
        float(stats["get"]["time_in_millis"]),
        float(search["query_time_in_millis"] + search["fetch_time_in_millis"]),
    )


def variants(client: Any) -> dict[str, Callable[[list[str]], None]]:
    from syncer.sinks.search.reads import target_filter

    includes = ",".join(["_syncer", *CACHE_FIELDS])

    def mget(params: dict[str, str]) -> Callable[[list[str]], None]:
        def read(ids: list[str]) -> None:
            docs = client.mget(index=INDEX, body={"ids": ids}, params=params)["docs"]
            assert all(doc["found"] and "_seq_no" in doc for doc in docs)

        return read

    def docvalues(ids: list[str]) -> None:
        body = {
            "query": {"ids": {"values": ids}},
            "size": len(ids),
            "_source": False,
            "docvalue_fields": [f"_syncer.{name}" for name in VERSION_FIELDS]
            + [f"{name}.keyword" for name in CACHE_FIELDS],
            "seq_no_primary_term": True,
            "track_total_hits": False,
        }
        hits = client.search(index=INDEX, body=body)["hits"]["hits"]
        assert len(hits) == len(ids)

    stored = ",".join(f"_syncer.{name}" for name in VERSION_FIELDS)
    return {
        "_mget _source_includes (before)": mget({"_source_includes": includes, "realtime": "true"}),
        "_mget _source_includes, realtime=false": mget(
            {"_source_includes": includes, "realtime": "false"}
        ),
        "_mget whole _source": mget({"realtime": "true"}),
        "_mget filter_path (now)": mget(
            {"filter_path": target_filter(CACHE_FIELDS), "realtime": "true"}
        ),
        "_mget stored_fields": mget(
            {"_source": "false", "stored_fields": stored, "realtime": "true"}
        ),
        "ids search, docvalue_fields": docvalues,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--docs", type=int, default=800, help="documents per request")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from opensearchpy import OpenSearch, helpers

    header("Target reads: OpenSearch's time per request of existing documents")
    client = OpenSearch(hosts=[OPENSEARCH_URL], timeout=120)
    _create_index(client)
    try:
        actions = (
            {"_index": INDEX, "_id": str(n), "_source": _document(n, 0)} for n in range(DOCUMENTS)
        )
        helpers.bulk(client, actions, chunk_size=1000)
        client.indices.refresh(index=INDEX)
        reads = variants(client)
        rng = random.Random(1)
        rows: dict[str, list[tuple[float, float]]] = {}
        for repeat in range(args.repeats):
            for name, read in reads.items():
                for dirty in (False, True):
                    ids = [str(n) for n in rng.sample(range(DOCUMENTS), args.docs)]
                    if dirty:  # written since the last refresh: a hot key's next batch
                        helpers.bulk(
                            client,
                            (
                                {"_index": INDEX, "_id": i, "_source": _document(int(i), repeat)}
                                for i in ids
                            ),
                        )
                    else:
                        client.indices.refresh(index=INDEX)
                    before = _server_ms(client)
                    started = time.perf_counter()
                    read(ids)
                    wall_ms = (time.perf_counter() - started) * 1000
                    after = _server_ms(client)
                    server = (after[0] - before[0]) + (after[1] - before[1])
                    label = f"{name} | {'written since refresh' if dirty else 'refreshed'}"
                    rows.setdefault(label, []).append((wall_ms, server))
        print(f"{args.docs} existing ~1 KB documents per request, {args.repeats} requests each")
        print(f"{'variant':<62} {'wall ms':>12} {'server ms':>12}")
        for label, values in rows.items():
            walls = [wall for wall, _ in values]
            servers = [server for _, server in values]
            print(
                f"{label:<62} {min(walls):>5.0f}-{max(walls):<6.0f} "
                f"{min(servers):>5.0f}-{max(servers):<6.0f}"
            )
    finally:
        client.indices.delete(index=INDEX, params={"ignore_unavailable": "true"})


if __name__ == "__main__":
    main()
