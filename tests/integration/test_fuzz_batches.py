"""Fuzzed batches through lambda_handler: valid stream records mixed with hypothesis-made bad ones.

25 fuzz cases, each one batch of 1 to 5 valid emulator records (new items, some changed or
deleted again) and 1 to 6 bad records: mutations of a valid record (a dropped field, a replaced
value, a swapped type tag, a broken SequenceNumber or eventName) sent from the stack's table,
another table or a made-up ARN, and now and then a bare JSON value. Valid records keep their
stream order; bad ones are slipped in anywhere. The stack is one per test, so each case reads the
dead-letter file from the line count it found before, not from an empty file.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer import handler
from syncer.core.plan import old_image_fields
from syncer.core.records import decode_records
from tests.helpers import (
    USABLE_SEQUENCE,
    JsonPath,
    Mutation,
    drop_field,
    json_paths,
    replace_value,
    set_body_field,
    set_field,
    swap_tag,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

FUZZ_CASES = 25
BAD_SEQUENCE_START = 10**30  # moto's sequence numbers have 22 digits: every bad one is larger
_bad_sequences = itertools.count(BAD_SEQUENCE_START)
_cases = itertools.count(1)

# Integers stay inside orjson's 64-bit range and text has no lone surrogates: those are the
# cases of test_a_bad_record_orjson_cannot_encode_is_still_dead_lettered.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
bad_sequence_numbers = st.one_of(
    st.text(max_size=45).filter(lambda text: not USABLE_SEQUENCE.fullmatch(text)),
    st.from_regex(r"[0-9]{41,50}", fullmatch=True),
    json_values.filter(lambda value: not isinstance(value, str)),
)
table_names = st.from_regex(r"[A-Za-z0-9_.-]{3,20}", fullmatch=True)


def _typed_value_paths(record: dict[str, Any]) -> list[JsonPath]:
    body = record.get("dynamodb")
    if not isinstance(body, dict):
        return []
    return [
        ("dynamodb", image, name)
        for image in ("Keys", "NewImage", "OldImage")
        if isinstance(body.get(image), dict)
        for name, typed in body[image].items()
        if isinstance(typed, dict) and len(typed) == 1
    ]


@st.composite
def mutations(draw: st.DrawFn, record: dict[str, Any]) -> Mutation:
    """One way to break ``record``."""
    paths = json_paths(record)
    typed = _typed_value_paths(record)
    kinds = ["drop", "replace", "sequence", "event_name", *(["tag"] if typed else [])]
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        path = draw(st.sampled_from([p for p in paths if isinstance(p[-1], str)]))
        return drop_field(path)
    if kind == "replace":
        return replace_value(draw(st.sampled_from(paths)), draw(json_values))
    if kind == "tag":
        return swap_tag(draw(st.sampled_from(typed)), draw(st.text(max_size=5)))
    if kind == "sequence":
        return set_body_field("SequenceNumber", draw(bad_sequence_numbers))
    return set_field("eventName", draw(st.one_of(st.text(max_size=10), json_values)))


@st.composite
def bad_records(draw: st.DrawFn, template: dict[str, Any], stack: Stack) -> object:
    """A broken copy of ``template`` from some table, or now and then a bare JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    record = copy.deepcopy(template)
    record["dynamodb"]["SequenceNumber"] = str(next(_bad_sequences))
    record["eventSourceARN"] = draw(
        st.one_of(
            st.just(stack.stream_arn),
            table_names.map(lambda name: stack.stream_arn.replace(stack.table, name)),
            st.text(max_size=30),
            json_values,
        )
    )
    for _ in range(draw(st.integers(0, 3))):
        draw(mutations(record))(record)
    return _made_poison(record, stack)


def _made_poison(record: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """Keep the record a DynamoDB one and make sure no mutation left it applicable."""
    source = record.get("eventSource")
    if source and source != "aws:dynamodb":
        record["eventSource"] = "aws:dynamodb"  # another source fails the whole event, by design
    # Decoded as process_batch decodes it: of an OldImage only what syncer reads is checked, so a
    # mutation elsewhere in one leaves the record good (docs/operations.md, "Poison records").
    fields = {table.name: old_image_fields(table) for table in stack.config.tables}
    decoded, _ = decode_records([record], fields)
    if decoded and decoded[0].table == stack.table:
        # the mutations left a good record: send it from a table nobody configured
        record["eventSourceARN"] = stack.stream_arn.replace(stack.table, "fuzz-unconfigured")
    return record


def _usable_sequence(record: object) -> str | None:
    body = record.get("dynamodb") if isinstance(record, dict) else None
    sequence = body.get("SequenceNumber") if isinstance(body, dict) else None
    if isinstance(sequence, str) and USABLE_SEQUENCE.fullmatch(sequence):
        return sequence
    return None


def _canonical(record: object) -> str:
    return json.dumps(record, sort_keys=True)


def _deadletter_lines(stack: Stack) -> list[bytes]:
    # Split on b"\n" only: entries may hold U+2028 or U+0085, which str.splitlines splits on.
    path = Path(stack.config.deadletter.file or "")
    return path.read_bytes().split(b"\n")[:-1] if path.exists() else []


def _put_items(stack: Stack, case: int, data: st.DataObject) -> None:
    """Write 1-3 new items, then maybe change one and delete one, so keys repeat in the stream."""
    pks = [f"fz{case}-{i}" for i in range(data.draw(st.integers(1, 3), label="items"))]
    for pk in pks:
        stack.put({"pk": {"S": pk}, "sk": {"S": "v1"}, "name": {"S": f"item {pk}"}})
    if data.draw(st.booleans(), label="change one"):
        stack.put({"pk": {"S": pks[0]}, "sk": {"S": "v1"}, "category": {"S": "changed"}})
    if len(pks) > 1 and data.draw(st.booleans(), label="delete one"):
        stack.delete(pks[-1], "v1")


def _interleave(valid: list[Any], bad: list[Any], valid_first: list[bool]) -> list[Any]:
    """Merge keeping each list's own order; ``valid_first`` says which list gives the next one."""
    valid_left, bad_left = iter(valid), iter(bad)
    return [next(valid_left) if take_valid else next(bad_left) for take_valid in valid_first]


@settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_records_are_dead_lettered_and_valid_ones_indexed(
    stack: Stack, data: st.DataObject
) -> None:
    """In a fuzzed batch every bad record is dead-lettered with why and every valid one applied."""
    # given new valid records from the emulator stream (after those of a case hypothesis cut
    # short, so the batch's shape depends on the drawn data alone)
    stack.deliver()
    _put_items(stack, next(_cases), data)
    valid = stack.new_records()
    # and bad copies of them, with unique larger sequence numbers, slipped in between
    bad = data.draw(st.lists(bad_records(valid[0], stack), min_size=1, max_size=6), label="bad")
    order = data.draw(st.permutations([True] * len(valid) + [False] * len(bad)), label="order")
    records = _interleave(valid, bad, order)
    lines_before = len(_deadletter_lines(stack))
    # when the batch goes through the Lambda handler
    response = handler.lambda_handler({"Records": records}, None)
    stack.delivered.update(r["dynamodb"]["SequenceNumber"] for r in valid)
    # then nothing is retried and the index equals the table
    assert response == {"batchItemFailures": []}
    assert stack.indexed() == stack.scanned()
    # and the dead letters gained exactly one entry per bad record, with its sequence and why
    entries = [json.loads(line) for line in _deadletter_lines(stack)[lines_before:]]
    assert Counter(_canonical(e["record"]) for e in entries) == Counter(map(_canonical, bad))
    expected_sequence = {_canonical(record): _usable_sequence(record) for record in bad}
    for entry in entries:
        assert entry["sequence_number"] == expected_sequence[_canonical(entry["record"])]
        assert entry["error"]["class"] == "PoisonRecordError"
        assert entry["error"]["message"].strip()


@pytest.mark.parametrize(
    ("field", "value"),
    [("SizeBytes", 2**70), ("eventID", json.loads('"\\ud800"'))],
    ids=["integer-beyond-64-bits", "lone-surrogate"],
)
def test_a_bad_record_orjson_cannot_encode_is_still_dead_lettered(
    stack: Stack, field: str, value: object
) -> None:
    """A bad record holding a huge integer or a lone surrogate is dead-lettered, not retried."""
    # given a valid record and a bad copy that also holds a value orjson refuses
    stack.put({"pk": {"S": "odd"}, "sk": {"S": "v1"}})
    (valid,) = stack.new_records()
    bad = copy.deepcopy(valid)
    bad.update({"eventName": "UPSERT", field: value})
    bad["dynamodb"]["SequenceNumber"] = str(next(_bad_sequences))
    lines_before = len(_deadletter_lines(stack))
    # when both go through the Lambda handler
    response = handler.lambda_handler({"Records": [valid, bad]}, None)
    # then nothing is retried and the bad record is in the dead letters
    assert response == {"batchItemFailures": []}
    (entry,) = [json.loads(line) for line in _deadletter_lines(stack)[lines_before:]]
    assert entry["sequence_number"] == bad["dynamodb"]["SequenceNumber"]
