"""Fuzzing the decoder: any JSON ends decoded or as a clear rejection, never as a crash.

Hypothesis runs 400 lists of arbitrary records, 500 batches of mutated valid records and 300
arbitrary events (1,200 cases). The example tests at the end pin the crashes this fuzzing found
(unhashable StreamViewType, a creation time beyond float range, numbers past Python's 4,300-digit
int limit, a lone surrogate in a key), so they stay rejections rather than exceptions.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.core.records import MAX_DOCUMENT_ID_BYTES, check_event, decode_records
from syncer.errors import InvalidEventError, PoisonRecordError
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
    valid_records,
)

VALID_RECORDS: list[dict[str, Any]] = valid_records()
_IMAGES = ("Keys", "NewImage", "OldImage")


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings for this module: no per-example deadline, ``max_examples`` cases."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _typed_value_paths(record: dict[str, Any]) -> list[JsonPath]:
    """Paths to every typed attribute value (``{"S": ...}``) in the record's key and images."""
    found: list[JsonPath] = []

    def visit(typed: object, path: JsonPath) -> None:
        if not isinstance(typed, dict) or len(typed) != 1:
            return
        found.append(path)
        ((tag, inner),) = typed.items()
        if tag == "M" and isinstance(inner, dict):
            for name, child in inner.items():
                visit(child, (*path, tag, name))
        elif tag == "L" and isinstance(inner, list):
            for position, child in enumerate(inner):
                visit(child, (*path, tag, position))

    body = record.get("dynamodb")
    for image in _IMAGES:
        if isinstance(body, dict) and isinstance(body.get(image), dict):
            for name, typed in body[image].items():
                visit(typed, ("dynamodb", image, name))
    return found


def _long_key(name: str, text: str) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        body = record.get("dynamodb")
        keys = body.get("Keys") if isinstance(body, dict) else None
        if isinstance(keys, dict):
            keys[name] = {"S": text}

    return mutate


bad_sequence_numbers = st.one_of(
    st.text(max_size=45).filter(lambda text: not USABLE_SEQUENCE.fullmatch(text)),
    st.from_regex(r"[0-9]{41,60}", fullmatch=True),
    json_values.filter(lambda value: not isinstance(value, str)),
)
random_event_names = st.one_of(st.text(max_size=12), json_values).filter(
    lambda name: name not in ("INSERT", "MODIFY", "REMOVE")
)


@st.composite
def mutations(draw: st.DrawFn, record: dict[str, Any]) -> Mutation:
    """One mutation of ``record``: a dropped field, a replaced value, a swapped tag, and so on."""
    paths = json_paths(record)
    typed = _typed_value_paths(record)
    kinds = ["drop", "replace", "sequence", "event_name", "long_key"]
    if typed:
        kinds.append("tag")
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        path = draw(st.sampled_from([p for p in paths if isinstance(p[-1], str)]))
        return drop_field(path)
    if kind == "replace":
        return replace_value(draw(st.sampled_from(paths)), draw(json_values))
    if kind == "tag":
        return swap_tag(draw(st.sampled_from(typed)), draw(st.text(max_size=6)))
    if kind == "sequence":
        return set_body_field("SequenceNumber", draw(bad_sequence_numbers))
    if kind == "event_name":
        return set_field("eventName", draw(random_event_names))
    # Multi-byte text makes byte length and character length differ around the 512-byte limit.
    unit = draw(st.text(st.sampled_from("ab|#\\é日🙂"), min_size=1, max_size=6))
    text = unit * draw(st.integers(20, 160))
    return _long_key(draw(st.sampled_from(["pk", "sk"])), text)


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record from tests/events with one to three mutations applied in turn."""
    record = copy.deepcopy(draw(st.sampled_from(VALID_RECORDS)))
    for _ in range(draw(st.integers(1, 3))):
        draw(mutations(record))(record)
    return record


def _assert_every_record_decoded_or_rejected(records: list[Any]) -> None:
    decoded, rejected = decode_records(records)
    outcome_ids = sorted([id(r.raw) for r in decoded] + [id(r.raw) for r in rejected])
    assert outcome_ids == sorted(id(record) for record in records)
    for rejection in rejected:
        assert isinstance(rejection.error, PoisonRecordError)
        assert str(rejection.error).strip()
    for change in decoded:
        assert len(change.document_id.encode("utf-8")) <= MAX_DOCUMENT_ID_BYTES


@fuzz(400)
@given(st.lists(json_values, max_size=3))
def test_arbitrary_json_records_are_decoded_or_rejected_with_a_reason(records: list[Any]) -> None:
    """Any JSON value given as a record is decoded or rejected with a PoisonRecordError message."""
    # given records that are arbitrary JSON values
    # when they are decoded
    # then none raises, each ends in exactly one outcome, and every rejection says why
    _assert_every_record_decoded_or_rejected(records)


@fuzz(500)
@given(st.lists(mutated_records(), min_size=1, max_size=2))
def test_mutated_valid_records_are_decoded_or_rejected_with_a_reason(
    records: list[dict[str, Any]],
) -> None:
    """Mutated real-format records decode to ids of at most 512 bytes or are rejected with why."""
    # given valid records with fields dropped, values replaced, tags and sequences broken
    # when they are decoded
    # then none raises, each ends in exactly one outcome, and decoded ids fit OpenSearch's _id
    _assert_every_record_decoded_or_rejected(records)


events = st.one_of(
    json_values,
    st.fixed_dictionaries({"Records": json_values}),
    st.fixed_dictionaries(
        {
            "Records": st.lists(
                st.one_of(
                    json_values,
                    st.sampled_from(VALID_RECORDS),
                    st.dictionaries(
                        st.sampled_from(["eventSource", "EventSource"]),
                        st.one_of(
                            st.sampled_from(["aws:dynamodb", "aws:sqs", "aws:kinesis", ""]),
                            json_values,
                        ),
                        min_size=1,
                    ),
                ),
                max_size=5,
            )
        }
    ),
)


@fuzz(300)
@given(events)
def test_check_event_returns_the_records_or_raises_invalid_event(event: object) -> None:
    """check_event on any JSON returns its Records or raises InvalidEventError, nothing else."""
    # given an arbitrary JSON event
    # when it is checked
    outcome: list[Any] | InvalidEventError
    try:
        outcome = check_event(event)
    except InvalidEventError as error:
        outcome = error
    # then a refusal carries a message, and an accepted event's Records list comes back as it is
    if isinstance(outcome, InvalidEventError):
        assert str(outcome).strip()
    else:
        assert isinstance(event, dict)
        assert outcome is event["Records"]
        assert isinstance(outcome, list)


def _record_with(mutate: Mutation) -> dict[str, Any]:
    record = copy.deepcopy(VALID_RECORDS[0])
    mutate(record)
    return record


def _only_rejection_message(record: dict[str, Any]) -> str:
    decoded, rejected = decode_records([record])
    assert decoded == []
    (rejection,) = rejected
    assert isinstance(rejection.error, PoisonRecordError)
    return str(rejection.error)


@pytest.mark.parametrize("view_type", [["NEW_IMAGE"], {"type": "NEW_IMAGE"}])
def test_unhashable_stream_view_type_is_rejected_not_raised(view_type: object) -> None:
    """A list or object as StreamViewType makes a rejected record, not a TypeError."""
    # given a record whose StreamViewType is a list or an object
    record = _record_with(set_body_field("StreamViewType", view_type))
    # when it is decoded, then it is rejected naming the field
    assert "StreamViewType" in _only_rejection_message(record)


def test_creation_time_beyond_float_range_is_rejected_not_raised() -> None:
    """An ApproximateCreationDateTime too big for a float makes a rejected record."""
    # given a record whose creation time is an integer of 400 digits
    record = _record_with(set_body_field("ApproximateCreationDateTime", 10**400))
    # when it is decoded, then it is rejected naming the field
    assert "ApproximateCreationDateTime" in _only_rejection_message(record)


@pytest.mark.parametrize("typed", [{"N": "1" * 5000}, {"NS": ["1" * 5000]}])
def test_number_of_5000_digits_is_rejected_not_raised(typed: dict[str, Any]) -> None:
    """An N or NS value of 5,000 digits makes a rejected record, not a ValueError."""
    # given a record whose new image holds a number of 5,000 digits (DynamoDB allows 38)
    record = _record_with(lambda r: r["dynamodb"]["NewImage"].__setitem__("price", typed))
    # when it is decoded, then it is rejected naming the attribute
    assert "price" in _only_rejection_message(record)


def test_lone_surrogate_in_a_key_is_rejected_not_raised() -> None:
    """A key holding a lone surrogate (valid JSON escape, invalid UTF-8) makes a rejected record."""
    # given a record whose pk is the JSON text "\ud800"
    record = _record_with(_long_key("pk", json.loads('"\\ud800"')))
    # when it is decoded, then it is rejected, not raised
    assert _only_rejection_message(record)
