"""Check that the optimised pure modules behave exactly as those of a git revision.

The default revision, c82cc6a, is the one whose outcomes the version order (issue 10) and the
failure handling (issue 11) changed on purpose: versions in ``_syncer``, ``Verdict`` values, empty
keys refused, decoder bugs raised. af36713, before the CPU-path tuning, is the reference for the
figures in bench/RESULTS.md; its outcomes differ from today's by those changes.

Not a benchmark: the guard behind the CPU-path optimisations. Random batches of stream records,
valid and malformed (bad types, tags, numbers, keys, sequence numbers, ARNs, event names), go
through ``decode_records``, ``coalesce_latest_per_key``, the planning path (``KeyWork`` and
``ChangePlanner``; ``plan_document_write`` in the revision),
``jsoncodec.dumps`` and ``plan_cache_keys`` of both versions, and every outcome must be equal:
decoded values with their types, rejections with their messages, coalesced changes, planned
writes, document bytes and cache keys. Then ``decode_number`` is compared on generated number
spellings. Exits 1 on the first difference.

One difference is by design: this tree decodes only the OldImage attributes syncer reads
(``plan.old_image_fields``; docs/operations.md, "Poison records"), so a revision that decodes the
whole OldImage is given each record with its OldImage cut to those attributes, and the script
counts the records that this changes (rejected before, decoded now; a REMOVE's image kept).

    .venv/bin/python bench/equivalence.py [--batches 5000] [--numbers 200000] [--seed 1]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import random
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LAYOUT, OWNED_MODULES, ROOT, stream_arn, syncer_tree_at

MODULES = (*OWNED_MODULES, "config", "search")


def load_syncer(tree: Path) -> dict[str, ModuleType]:
    """Import the syncer package found in ``tree`` under its own name, then forget it."""
    for name in [k for k in sys.modules if k == "syncer" or k.startswith("syncer.")]:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        paths = {name: f"syncer.{LAYOUT.get(name, name)}" for name in MODULES}
        for path in paths.values():
            __import__(path)
        loaded = {name: sys.modules[path] for name, path in paths.items()}
        if not hasattr(loaded["plan"], "plan_document_write"):  # today's planning path
            for name in ("work", "planners", "documents"):
                loaded[name] = importlib.import_module(f"syncer.core.{name}")
        return loaded
    finally:
        sys.path.remove(str(tree))
        for name in [k for k in sys.modules if k == "syncer" or k.startswith("syncer.")]:
            del sys.modules[name]


class Records:
    """Random stream records; ``clean`` batches have no deliberate defects."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.clean = False

    def text(self) -> str:
        texts = ["", "a", "x|y", "#h", "b\\c", "é", "日本", "\ud800", "a" * 300]
        texts.append(f"p-{self.rng.randint(0, 99)}")
        return self.rng.choice(texts)

    def number(self) -> str:
        good = ["0", "-1", "129.95", "1e5", "1E-7", "1" * 38, "100.000", ".5", "0.000001", "-3.25"]
        good.append(str(self.rng.randint(-(10**30), 10**30)))
        bad = ["12abc", "", "+1", "NaN", "1_0", "1" * 41, " 5", "1.2.3", "Infinity"]
        return self.rng.choice(good if self.clean or self.rng.random() < 0.7 else bad)

    def typed(self, depth: int = 0) -> Any:
        rng = self.rng
        if not self.clean and rng.random() < 0.05:
            return rng.choice([None, "x", 5, [], {}, {"S": "a", "N": "1"}, {"X": "1"}, {1: "a"}])
        bad = not self.clean and rng.random() < 0.05
        tag = rng.choice(["S", "N", "BOOL", "NULL", "M", "L", "SS", "NS", "B", "BS"])
        value: Any
        if tag == "S":
            value = rng.choice([1, None, ["a"]]) if bad else self.text()
        elif tag == "N":
            value = rng.choice([1, None, 1.5]) if bad else self.number()
        elif tag == "BOOL":
            value = rng.choice(["true", 1, None]) if bad else rng.choice([True, False])
        elif tag == "NULL":
            value = rng.choice([False, None, "x"]) if bad else True
        elif tag == "M":
            value = rng.choice([[], "m", None]) if bad or depth >= 3 else self.item(depth + 1)
        elif tag == "L":
            count = rng.randint(0, 3)
            value = (
                rng.choice([{}, "l"])
                if bad or depth >= 3
                else [self.typed(depth + 1) for _ in range(count)]
            )
        elif tag == "SS":
            value = [1, "a"] if bad else [self.text() for _ in range(rng.randint(0, 4))]
        elif tag == "NS":
            value = (
                "1"
                if bad
                else [
                    str(rng.randint(-100, 100)) + rng.choice(["", ".5", ".25", "e1", ".0"])
                    for _ in range(rng.randint(0, 5))
                ]
            )
        elif tag == "B":
            value = 5 if bad else rng.choice(["3q2+7w==", "AA==", "not base64!", b"\x01\x02", ""])
        else:
            value = (
                "x"
                if bad
                else [
                    rng.choice(["AQI=", "/w==", "AA==", b"\xff"]) for _ in range(rng.randint(0, 3))
                ]
            )
        return {tag: value}

    def item(self, depth: int = 0) -> dict[Any, Any]:
        names = ["pk", "sk", "category", "cost", "_syncer", "title", "n1", "n2", "n3"]
        item: dict[Any, Any] = {
            self.rng.choice(names): self.typed(depth) for _ in range(self.rng.randint(0, 6))
        }
        if not self.clean and self.rng.random() < 0.02:
            item[5] = {"S": "x"}
        return item

    def record(self, sequence: int) -> Any:
        rng = self.rng
        keys: dict[str, Any] = {"pk": {"S": rng.choice(["p1", "p2", "p|3", "p#4", "é5", "\ud800"])}}
        if rng.random() < 0.7:
            keys["sk"] = rng.choice([{"S": "v1"}, {"N": "7"}, {"N": "1.5"}, {"B": "AA=="}])
        bad_sequences = ["00" + str(sequence), "x", 5, "1" * 41, ""]
        body: dict[str, Any] = {
            "Keys": keys,
            "SequenceNumber": str(sequence)
            if self.clean or rng.random() < 0.8
            else rng.choice(bad_sequences),
            "ApproximateCreationDateTime": rng.choice([1704067200, "1678831218.0", 1704067200123]),
        }
        view = rng.choice(["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "KEYS_ONLY", "OLD_IMAGE", None])
        if view:
            body["StreamViewType"] = view
        for image in ("NewImage", "OldImage"):
            if rng.random() < 0.7:
                body[image] = {**self.item(), **keys}
        names = ["INSERT", "MODIFY", "REMOVE"] + ([] if self.clean else ["UPSERT", 5])
        arns = [stream_arn("catalog")] * 4 + ([] if self.clean else ["bad", None])
        record: dict[str, Any] = {
            "eventName": rng.choice(names),
            "eventSource": "aws:dynamodb",
            "eventSourceARN": rng.choice(arns),
            "dynamodb": body,
        }
        if rng.random() < 0.1:
            record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        if not self.clean and rng.random() < 0.02:
            return rng.choice([None, [], "rec"])
        return record


def comparable(value: Any) -> Any:
    """A value with its types spelled out, so that 1, 1.0, True and Decimal(1) differ."""
    if isinstance(value, dict):
        return ("dict", [(comparable(k), comparable(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [comparable(v) for v in value])
    if hasattr(value, "__dataclass_fields__"):
        # The fields that make the value (those its == compares): a field kept beside them
        # (a version computed once, the version a write records) is compared through what it
        # stands for, the version property, or the body's bytes.
        fields = [f.name for f in dataclasses.fields(value) if f.compare and f.name != "raw"]
        if isinstance(getattr(type(value), "version", None), property):
            fields.append("version")
        return (type(value).__name__, [(f, comparable(getattr(value, f))) for f in fields])
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    if type(value).__name__ == "EventName":
        return ("EventName", value.value)
    return (type(value).__name__, repr(value))


def plan_key(modules: dict[str, ModuleType], change: Any, table: Any) -> Any:
    """A change planned into the table's absent document the way the tree's pipeline plans it:
    ``plan_document_write`` in revisions that have it, else a ``KeyWork`` and ``ChangePlanner``
    (the item read from the table taken as gone, for streams without a new image)."""
    old = getattr(modules["plan"], "plan_document_write", None)
    if old is not None:
        return old(change, table, None, current_item=None)
    work = modules["work"].KeyWork.start(change, table)
    work.item_read = True
    target = modules["documents"].TargetState(table.index, None)
    return modules["planners"].ChangePlanner((work,))(work.home, target, None)


TEMPLATES = ("product:{pk}", "product:{pk}:{sk}", "category:{category}", "x{n1}-{n2}")
# What the templates name, spelled out here rather than asked of the tree under test: a tree
# that read fewer attributes of an OldImage would decode a different old image and differ.
READ_FIELDS = ("category", "n1", "n2", "pk", "sk")


def old_fields(modules: dict[str, ModuleType]) -> tuple[str, ...] | None:
    """The OldImage attributes the tree's pipeline decodes; None: all (trees before it)."""
    table = modules["config"].TableConfig("catalog", "catalog", TEMPLATES, frozenset({"cost"}))
    fields = getattr(modules["plan"], "old_image_fields", None)
    return None if fields is None else tuple(fields(table))


def as_read(records: list[Any], fields: tuple[str, ...]) -> list[Any]:
    """``records`` with each OldImage cut to ``fields`` minus the key attributes, in that order.

    What a tree that decodes the whole OldImage must be given to decode what a tree that reads
    only ``fields`` of it decodes: the attributes left out are never read there (by design,
    docs/operations.md), so a bad value among them rejects nothing.
    """
    cut = []
    for record in records:
        body = record.get("dynamodb") if isinstance(record, dict) else None
        image = body.get("OldImage") if isinstance(body, dict) else None
        keys = body.get("Keys") if isinstance(body, dict) else None
        keys = keys if isinstance(keys, dict) else {}  # not a map: refused before the image
        if isinstance(image, dict):
            kept = {name: image[name] for name in fields if name in image and name not in keys}
            record = {**record, "dynamodb": {**body, "OldImage": kept}}
        cut.append(record)
    return cut


def outcomes(modules: dict[str, ModuleType], records: list[Any]) -> list[Any]:
    """Everything the pure stages produce for ``records``, decoded as the tree's pipeline does."""
    fields = old_fields(modules)
    if fields is None:
        decoded, rejected = modules["records"].decode_records(records)
    else:
        decoded, rejected = modules["records"].decode_records(records, {"catalog": fields})
    result: list[Any] = [
        comparable(decoded),
        comparable([(r.error, r.table, r.sequence_text) for r in rejected]),
    ]
    changes = modules["coalesce"].coalesce_latest_per_key(decoded)
    result.append(comparable(changes))
    table = modules["config"].TableConfig("catalog", "catalog", TEMPLATES, frozenset({"cost"}))
    extra = {"category": "shoes", "pk": "old"}
    for change in changes:
        try:
            write = plan_key(modules, change, table)
            result.append(comparable(write))
            result.append(modules["jsoncodec"].dumps(write.body))
        except Exception as error:  # noqa: BLE001 - the error itself is the outcome compared
            result.append(comparable(error))
        try:
            result.append(sorted(modules["plan"].plan_cache_keys(change, table, [extra, None])))
        except Exception as error:  # noqa: BLE001
            result.append(comparable(error))
    return result


def number_spellings(rng: random.Random, count: int) -> list[Any]:
    alphabet = "0123456789.-+eE _a\u0660"
    cases: list[Any] = ["", "-", ".", "1.", ".5", "-.5", "1e5", "100.000", "-0", "+5", "NaN"]
    cases += ["1" * 18, "1" * 19, "9" * 20, "1" * 160, "1" * 161, "18446744073709551616", 5, None]
    for _ in range(count // 2):
        cases.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
        exponent = rng.choice(["", ".", ".0", ".000", "e" + str(rng.randint(-50, 50))])
        fraction = "." + "0" * rng.randint(0, 3) + str(rng.randint(1, 999))
        cases.append(
            f"{rng.choice(['', '-'])}{rng.randint(0, 10 ** rng.randint(1, 45))}"
            f"{rng.choice([exponent, fraction])}"
        )
    return cases


def number_outcome(decode_number: Any, text: Any) -> Any:
    try:
        value = decode_number(text, "p")
    except Exception as error:  # noqa: BLE001 - the error itself is the outcome compared
        return (type(error).__name__, str(error))
    return (type(value).__name__, str(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--revision", default="c82cc6a")
    parser.add_argument("--batches", type=int, default=5000)
    parser.add_argument("--numbers", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tree = syncer_tree_at(args.revision)
    try:
        ours, theirs = load_syncer(ROOT), load_syncer(tree)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    rng = random.Random(args.seed)
    records = Records(rng)
    counts = {"decoded": 0, "rejected": 0, "by design": 0, "image errors gone": 0}
    fields = old_fields(ours)
    for number in range(args.batches):
        records.clean = rng.random() < 0.6
        batch = [records.record(10**21 + rng.randint(0, 50)) for _ in range(rng.randint(1, 6))]
        # The one difference by design: ours reads only what the templates name of an OldImage.
        given = (
            batch
            if fields is None or old_fields(theirs) is not None
            else as_read(batch, READ_FIELDS)
        )
        expected = outcomes(theirs, copy.deepcopy(given))
        if outcomes(ours, copy.deepcopy(batch)) != expected:
            sys.exit(f"batch {number} differs from {args.revision}: {batch!r:.2000}")
        decoded, rejected = expected[0][1], expected[1][1]
        counts["decoded"] += len(decoded)
        counts["rejected"] += len(rejected)
        if given is not batch:  # what the whole OldImage's decoding made of the same batch
            before, after = (
                theirs["records"].decode_records(copy.deepcopy(raws)) for raws in (batch, given)
            )
            counts["by design"] += len(before[1]) - len(after[1])
            counts["image errors gone"] += sum(bool(r.image_error) for r in before[0]) - sum(
                bool(r.image_error) for r in after[0]
            )
    spellings = number_spellings(rng, args.numbers)
    for text in spellings:
        ours_number = number_outcome(ours["attributes"].decode_number, text)
        if ours_number != number_outcome(theirs["attributes"].decode_number, text):
            sys.exit(f"decode_number({text!r}) differs from {args.revision}")
    print(
        f"identical to {args.revision}: {args.batches} batches ({counts['decoded']} records "
        f"decoded, {counts['rejected']} rejected) and {len(spellings)} number spellings"
    )
    if fields is not None:
        print(
            f"by design (of an OldImage only {', '.join(READ_FIELDS)} read, keys from the Keys): "
            f"{counts['by design']} records {args.revision} rejected for a bad OldImage attribute "
            f"syncer does not read are decoded, and {counts['image errors gone']} REMOVEs keep "
            "their old image; every outcome else is identical"
        )


if __name__ == "__main__":
    main()
