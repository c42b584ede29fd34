"""Shared pieces of the benchmarks: a realistic catalog item, Lambda-format records, settings.

Nothing here is timed. Items are generated deterministically (seeded), so every run of every
script measures the same data.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The modules tuned for the CPU path (bench/RESULTS.md); the "before" variants swap these.
OWNED_MODULES = ("attributes", "records", "coalesce", "plan", "jsoncodec")
REGION = "us-east-1"
ACCOUNT = "123456789012"
STREAM_LABEL = "2024-01-01T00:00:00.000"
# Sequence numbers as production has them: 21+ digits, gapped (REFERENCE.md).
SEQUENCE_BASE = 10**20 * 3

SERVICES_ENV = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHE_KEYS = ["product:{pk}", "product:{pk}:{sk}", "category:{category}"]

_PRODUCT_TEXT = (
    "trail running shoe breathable mesh upper cushioned midsole grippy outsole lightweight "
    "waterproof jacket merino wool base layer insulated hooded parka stretch denim slim fit "
    "organic cotton crew neck recycled polyester zip pocket reflective detail all season"
)
_WORDS = _PRODUCT_TEXT.split()
_BRANDS = ["Nordkap", "Alpenglow", "Kestrel", "Ridgeway", "Tundra & Co", "Bergfeld"]
_CATEGORIES = ["shoes", "jackets", "base-layers", "trousers", "accessories", "bags", "tents"]
_COLOURS = ["red", "blue", "black", "olive", "sand", "grey", "teal", "orange"]


def use_services_env() -> None:
    """Point boto3 at moto unless the caller set its own endpoint."""
    for name, value in SERVICES_ENV.items():
        os.environ.setdefault(name, value)


def stream_arn(table: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/{STREAM_LABEL}"


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def catalog_item(number: int, rng: random.Random | None = None) -> dict[str, Any]:
    """A catalog item in DynamoDB's typed JSON (as Lambda delivers it): 16 attributes, ~1 KB.

    Strings, a long description, exact decimals and integers, a string set, a number set, a
    boolean, a nested map of numbers and a list of maps; ``cost`` is excluded from the index.
    """
    rng = rng or random.Random(number)
    price = f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}"
    return {
        "pk": {"S": f"prod-{number:09d}"},
        "sk": {"S": f"variant-{number % 7}"},
        "title": {"S": f"{rng.choice(_BRANDS)} {_words(rng, 6)}".title()},
        "description": {"S": _words(rng, 45).capitalize() + "."},
        "brand": {"S": rng.choice(_BRANDS)},
        "category": {"S": rng.choice(_CATEGORIES)},
        "price": {"N": price},
        "currency": {"S": "EUR"},
        "stock": {"N": str(rng.randint(0, 5000))},
        "rating": {"N": f"{rng.randint(10, 50) / 10}"},
        "tags": {"SS": sorted({rng.choice(_WORDS) for _ in range(5)})},
        "sizes": {
            "NS": [str(s) for s in rng.sample([36, 37, 38, 39, 40, 41, 42, 43, 44.5, 45], 6)]
        },
        "active": {"BOOL": rng.random() > 0.1},
        "dimensions": {
            "M": {
                "length_cm": {"N": f"{rng.randint(10, 80)}.5"},
                "width_cm": {"N": str(rng.randint(5, 40))},
                "height_cm": {"N": str(rng.randint(5, 30))},
                "weight_kg": {"N": f"0.{rng.randint(100, 999)}"},
                "colour": {"S": rng.choice(_COLOURS)},
            }
        },
        "images": {
            "L": [
                {
                    "M": {
                        "url": {"S": f"https://img.example.com/p/{number}/{side}.jpg"},
                        "alt": {"S": f"{side} view"},
                        "width": {"N": "1200"},
                    }
                }
                for side in ("front", "back")
            ]
        },
        "updated_at": {"N": str(1_704_067_200_000 + number * 1000)},
        "cost": {"N": f"{rng.randint(2, 200)}.{rng.randint(0, 99):02d}"},
    }


def key_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"pk": item["pk"], "sk": item["sk"]}


def stream_record(
    table: str,
    item: dict[str, Any],
    sequence: int,
    event_name: str = "INSERT",
    old_item: dict[str, Any] | None = None,
    created_s: int = 1_704_067_200,
) -> dict[str, Any]:
    """One record exactly as Lambda delivers a DynamoDB Streams change (NEW_AND_OLD_IMAGES)."""
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": created_s,
        "Keys": key_of(item),
        "SequenceNumber": str(sequence),
        "SizeBytes": len(json.dumps(item)),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if event_name != "REMOVE":
        body["NewImage"] = item
    if old_item is not None:
        body["OldImage"] = old_item
    return {
        "eventID": f"{sequence:032x}"[-32:],
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": body,
        "eventSourceARN": stream_arn(table),
    }


def insert_records(table: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    """``count`` INSERT records of distinct items (unique keys), numbered from ``first``."""
    return [
        stream_record(table, catalog_item(n), SEQUENCE_BASE + n * 100)
        for n in range(first, first + count)
    ]


def write_config(path: Path, table: str, index: str, deadletter: Path | None = None) -> Path:
    """A syncer.toml for one bench table on the local services (cache keys as the README's)."""
    keys = ", ".join(json.dumps(k) for k in CACHE_KEYS)
    deadletter = deadletter or path.with_suffix(".deadletter.jsonl")
    path.write_text(
        f'[opensearch]\nurl = "{OPENSEARCH_URL}"\n\n[redis]\nurl = "{REDIS_URL}"\n\n'
        f'[deadletter]\nfile = "{deadletter}"\n\n'
        f'[[tables]]\nname = "{table}"\nindex = "{index}"\ncache_keys = [{keys}]\n'
        'exclude_attributes = ["cost"]\n'
    )
    return path


def setup_index(config_path: Path, fresh: bool = True) -> None:
    """Delete the bench indices (when ``fresh``) and run ``syncer setup`` for them."""
    from syncer.config import load_config
    from syncer.sinks.indices import apply_setup, plan_setup
    from syncer.sinks.search import make_client

    config = load_config(str(config_path))
    client = make_client(config.opensearch)
    for table in config.tables:
        if fresh:
            client.indices.delete(index=f"{table.index}-0*", params={"ignore_unavailable": "true"})
        apply_setup(client, table, plan_setup(client, table))


def machine() -> str:
    """One line naming the machine the figures were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')} | {machine()}")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p50 = median of the sorted values, p99 of 1,000 = 990th)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter of this venv and return its stdout."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def teardown_index(config_path: Path) -> None:
    """Delete what ``setup_index`` made: the versioned indices and the index template."""
    from syncer.config import load_config
    from syncer.sinks.indices import template_name
    from syncer.sinks.search import make_client

    config = load_config(str(config_path))
    client = make_client(config.opensearch)
    for table in config.tables:
        client.indices.delete(index=f"{table.index}-0*", params={"ignore_unavailable": "true"})
        client.indices.delete_index_template(name=template_name(table), ignore=404)


# Where each module of the flat package of earlier revisions lives since issue 18's layout.
LAYOUT = {
    "attributes": "core.attributes",
    "records": "core.records",
    "coalesce": "core.coalesce",
    "versions": "core.versions",
    "documents": "core.documents",
    "routes": "core.routes",
    "plan": "core.plan",
    "jsoncodec": "core.jsoncodec",
    "search": "sinks.search",
}


# Document types that early revisions imported from the search module; they live in
# core/documents.py now, and sinks/search no longer re-exports them.
_DOCUMENT_TYPES = {"SYNCER_FIELD", "DocumentWrite", "IndexedDocument", "WriteKind"}


def _documents_from_search(match: re.Match[str]) -> str:
    names = [name.strip() for name in match[1].split(",")]
    moved = [name for name in names if name in _DOCUMENT_TYPES]
    kept = [name for name in names if name not in _DOCUMENT_TYPES]
    lines = [f"from syncer.core.documents import {', '.join(moved)}"] if moved else []
    if kept:
        lines.append(f"from syncer.sinks.search import {', '.join(kept)}")
    return "\n".join(lines)


def _in_layout(source: str) -> str:
    """A flat-layout module's source with its ``syncer`` imports pointed at the new layout."""
    source = re.sub(
        r"^from syncer\.search import ([\w, ]+)$",
        _documents_from_search,
        source,
        flags=re.MULTILINE,
    )
    source = re.sub(r"\bsyncer\.([a-z_]+)\b", lambda m: "syncer." + LAYOUT.get(m[1], m[1]), source)
    return re.sub(
        r"^from syncer import ([a-z_]+)$",
        lambda m: "from syncer.{} import {} as {}".format(*LAYOUT[m[1]].rsplit("."), m[1]),
        source,
        flags=re.MULTILINE,
    )


def whole_syncer_tree_at(revision: str) -> Path:
    """The whole syncer package as it is at ``revision`` (``git archive``), in a new directory."""
    tree = Path(tempfile.mkdtemp(prefix="syncer-at-"))
    archive = subprocess.run(
        ["git", "archive", revision, "syncer"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def syncer_tree_at(revision: str) -> Path:
    """A copy of the working tree's syncer package with ``OWNED_MODULES`` as at ``revision``.

    Revisions before issue 18's layout kept them flat in ``syncer/``: they are put where the
    layout keeps them now, their imports pointed there.
    """
    tree = Path(tempfile.mkdtemp(prefix="syncer-at-"))
    shutil.copytree(ROOT / "syncer", tree / "syncer")
    for name in OWNED_MODULES:
        path = LAYOUT[name].replace(".", "/") + ".py"
        shown = subprocess.run(
            ["git", "show", f"{revision}:syncer/{path}"], cwd=ROOT, capture_output=True
        )
        if shown.returncode != 0:  # a revision of the flat layout
            shown = subprocess.run(
                ["git", "show", f"{revision}:syncer/{name}.py"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
        source = _in_layout(shown.stdout.decode("utf-8"))
        (tree / "syncer" / path).write_text(source, encoding="utf-8")
    return tree


def start_bench(title: str, name: str, table: str, alias: str) -> tuple[Path, Path]:
    """Point at the local services, print the header, set up ``alias``: (work dir, config)."""
    use_services_env()
    header(title)
    work = Path(tempfile.mkdtemp(prefix=f"syncer-bench-{name}-"))
    config_path = write_config(work / "bench.toml", table, alias)
    setup_index(config_path)
    return work, config_path
