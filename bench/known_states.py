"""What a process's known states cost per key: the batch's lookup and the write's remember.

``KnownStates`` (``syncer.core.known``) is asked once per batch for every key it plans and told
once per key written. This times both, per key, in batches of 800 keys of a catalog item's
written body, after 9,600 keys were written: first updates of keys the store holds, under its
10,000 default capacity (every lookup finds a state), then with the store full, half of each
batch's keys held and half new, each new one dropping the oldest state (where a Lambda container
lives once it has seen more than 10,000 keys), then with the full store taking only new keys. The same batches run in
the working tree and, with ``--before REV``, in the whole package as at REV, each in its own
interpreter, taking turns. No services; CPU time of the timed calls only.

    .venv/bin/python bench/known_states.py [--before dc4388a] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, header, whole_syncer_tree_at

BATCH_KEYS = 800  # the distinct keys of a 1,000-record update batch
WARM_KEYS = 9_600  # written before the timed batches: under the default capacity of 10,000
BATCHES = 20  # timed batches per phase
KEPT = ("_syncer", "category", "brand")


def _body(number: int, seq: int) -> dict[str, Any]:
    meta = {"table": "catalog", "deleted": False, "seq": str(seq).zfill(40)}
    meta.update({"stream": 1_700_000_000_000, "changed_at": 1_700_000_000_000 + seq})
    return {
        "pk": f"prod-{number:09d}",
        "sk": "variant-1",
        "title": "Acme trail shoe",
        "category": "shoes",
        "brand": "acme",
        "price": 129,
        "_syncer": meta,
    }


def run_tree() -> dict[str, list[float]]:
    """In this interpreter: us per key for lookup and remember, per batch, in both phases."""
    import inspect

    from syncer.core.documents import DocumentWrite, WriteKind
    from syncer.core.known import KnownStates
    from syncer.core.versions import version_from_meta

    known = KnownStates()
    # Any: the revisions before known states were kept ready took (ref, index, body, seq_no,
    # primary_term, kept).
    remember_written: Any = known.remember_written
    new_api = "write" in inspect.signature(remember_written).parameters
    answer = {"_index": "catalog-000001", "_primary_term": 1}

    def batch(numbers: list[int], seq: int) -> tuple[float, float]:
        """Look the batch's keys up, then remember each written: us per key for each."""
        refs = [("catalog", f"prod-{n:09d}|variant-1") for n in numbers]
        bodies = [_body(n, seq) for n in numbers]
        # What the planner built (not timed): the write, with its version.
        writes = [
            DocumentWrite(
                ("catalog-000001", ref[1]),
                WriteKind.INDEX,
                body,
                None,
                version_from_meta(body["_syncer"]),
            )
            if new_api
            else None
            for ref, body in zip(refs, bodies, strict=True)
        ]
        written = {**answer, "_seq_no": seq}
        started = time.process_time()
        known.lookup(refs)
        looked_up = time.process_time()
        for ref, body, write in zip(refs, bodies, writes, strict=True):
            if new_api:
                remember_written([ref], write, written, KEPT)
            else:
                remember_written(ref, "catalog-000001", body, seq, 1, KEPT)
        remembered = time.process_time()
        per_key = 1e6 / len(numbers)
        return (looked_up - started) * per_key, (remembered - looked_up) * per_key

    rng = random.Random(7)
    for first in range(0, WARM_KEYS, BATCH_KEYS):  # a fresh container's first batches
        batch(list(range(first, first + BATCH_KEYS)), 1)
    figures: dict[str, list[float]] = {}
    seq = 1
    # Updates of keys the store holds, under its capacity: every lookup finds its state.
    for _ in range(BATCHES):
        seq += 1
        lookup, remember = batch(rng.sample(range(WARM_KEYS), BATCH_KEYS), seq)
        figures.setdefault("held lookup", []).append(lookup)
        figures.setdefault("held remember", []).append(remember)
    # A full store: half of each batch's keys are held, half new (each drops the oldest).
    fresh = WARM_KEYS
    for _ in range(BATCHES):
        seq += 1
        # Held: among the 5,000 newest ids, all of which a store of 10,000 still holds.
        held = rng.sample(range(fresh - 5_000, fresh), BATCH_KEYS // 2)
        new = list(range(fresh, fresh + BATCH_KEYS // 2))
        fresh += BATCH_KEYS // 2
        lookup, remember = batch(held + new, seq)
        figures.setdefault("full lookup", []).append(lookup)
        figures.setdefault("full remember", []).append(remember)
    # A full store taking only new keys (a backfill's or a new shard's): each drops the oldest.
    for _ in range(BATCHES):
        seq += 1
        lookup, remember = batch(list(range(fresh, fresh + BATCH_KEYS)), seq)
        fresh += BATCH_KEYS
        figures.setdefault("new lookup", []).append(lookup)
        figures.setdefault("new remember", []).append(remember)
    return figures


def _in_interpreter(tree: Path) -> dict[str, list[float]]:
    # The tree's syncer is imported first: importing this module puts the working tree first on
    # the path.
    code = (
        f"import sys, json; sys.path.insert(0, {str(tree)!r});"
        "import syncer.core.known, syncer.core.documents, syncer.core.versions;"
        f"assert syncer.core.known.__file__.startswith({str(tree)!r}), syncer.core.known.__file__;"
        f"sys.path.insert(1, {str(ROOT)!r});"
        "from bench.known_states import run_tree; print(json.dumps(run_tree()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{done.stderr}")
    figures: dict[str, list[float]] = json.loads(done.stdout.splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--before", default=None, help="also the whole package at this revision")
    parser.add_argument("--rounds", type=int, default=3, help="interpreters per tree, in turns")
    args = parser.parse_args()
    header("Known states: lookup and remember per key, held keys and a full store")
    trees = {"working tree": ROOT}
    if args.before:
        trees[f"at {args.before}"] = whole_syncer_tree_at(args.before)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            for figure, values in _in_interpreter(tree).items():
                results[name].setdefault(figure, []).extend(values)
    figures = list(next(iter(results.values())))
    print(f"us per key, median (min-max) of {args.rounds} x batches of {BATCH_KEYS} keys")
    print(f"{'tree':<14}" + "".join(f"{figure:>20}" for figure in figures))
    for name, per_figure in results.items():
        cells = "".join(
            f"{statistics.median(per_figure[f]):>6.2f} "
            f"({min(per_figure[f]):.2f}-{max(per_figure[f]):.2f})"
            for f in figures
        )
        print(f"{name:<14}{cells}")
        print(
            "RESULT known_states tree="
            + name.replace(" ", "_")
            + " "
            + " ".join(
                f"{f.replace(' ', '_')}_us={statistics.median(per_figure[f]):.2f}" for f in figures
            )
        )


if __name__ == "__main__":
    main()
