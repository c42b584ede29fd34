"""The decoder's fast path and its checked decoder agree on every value, good or bad.

The fast path (``_fast_map``, ``_fast_value``, ``_fast_number`` and the shapes they take inline)
only speeds up what the checked decoder would return anyway: the same value of the same type
(``int``, ``BigInt`` or ``Decimal`` with its exponent), sets in the same order, and for a bad
value the same ``PoisonRecordError`` message. Hypothesis compares the two on generated values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from syncer.core import attributes
from syncer.core.attributes import decode_item, decode_value
from syncer.errors import PoisonRecordError

Outcome = tuple[str, object]


@contextlib.contextmanager
def checked_decoder_only() -> Iterator[None]:
    """Every fast path declines, so the checked decoder decides each value itself."""

    def decline(*_: object) -> Any:
        return attributes._UNUSUAL

    with (
        mock.patch.object(attributes, "_fast_map", decline),
        mock.patch.object(attributes, "_fast_value", decline),
        mock.patch.object(attributes, "_fast_number", decline),
    ):
        yield


def exact(value: object) -> object:
    """``value`` with every type and every Decimal exponent made part of what compares."""
    if isinstance(value, dict):
        return ("dict", tuple((name, exact(inner)) for name, inner in value.items()))
    if isinstance(value, list):
        return ("list", tuple(exact(inner) for inner in value))
    return (type(value).__name__, repr(value))


def outcome(decode: Callable[[Any, str], Any], typed: object) -> Outcome:
    try:
        return ("value", exact(decode(typed, "attr")))
    except PoisonRecordError as error:
        return ("poison", str(error))


def both(decode: Callable[[Any, str], Any], typed: object) -> tuple[Outcome, Outcome]:
    fast = outcome(decode, typed)
    with checked_decoder_only():
        checked = outcome(decode, typed)
    return fast, checked


number_texts = st.one_of(
    st.from_regex(r"-?[0-9]{0,42}(\.[0-9]{0,42})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,20}\.[0-9]{0,5}0{0,45}", fullmatch=True),
    st.text(alphabet="0123456789.-+eE _\u0661\u00b2xn", max_size=24),
    st.integers(155, 175).map(lambda length: "1" * length),
    st.integers(155, 175).map(lambda length: "1." + "5" * (length - 2)),
    st.sampled_from(["Infinity", "-inf", "NaN", "1_000", " 5", "+5", "5.", ".5", "-.5", "-0.0"]),
)
non_strings = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.just([]))
typed_leaves = st.one_of(
    st.builds(lambda text: {"N": text}, number_texts | non_strings),
    st.builds(lambda text: {"S": text}, st.text(max_size=8) | non_strings),
    st.builds(lambda flag: {"BOOL": flag}, st.booleans() | non_strings),
    st.builds(lambda flag: {"NULL": flag}, st.booleans() | non_strings),
    st.builds(lambda texts: {"NS": texts}, st.lists(number_texts | non_strings, max_size=6)),
    st.builds(lambda texts: {"SS": texts}, st.lists(st.text(max_size=4) | non_strings, max_size=4)),
    st.builds(lambda text: {"B": text}, st.sampled_from(["AQ==", "not base64", b"\x01", 5])),
    st.builds(lambda texts: {"BS": texts}, st.lists(st.sampled_from(["AQ==", "Ag==", "?"]))),
    st.builds(lambda tag: {tag: "1"}, st.sampled_from(["X", "n", ""])),
    st.just({"S": "a", "N": "1"}),
    st.just({}),
    non_strings,
)
typed_values = st.recursive(
    typed_leaves,
    lambda children: st.one_of(
        st.builds(lambda items: {"L": items}, st.lists(children, max_size=4) | non_strings),
        st.builds(
            lambda fields: {"M": fields},
            st.dictionaries(st.text(max_size=4), children, max_size=4) | non_strings,
        ),
    ),
    max_leaves=10,
)
typed_items = st.dictionaries(st.text(max_size=4), typed_values, max_size=6)
agreement = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@agreement
@given(number_texts)
@example("126.75")
@example("0.120")
@example("5.00")
@example("1" * 19)
@example("1." + "5" * 159)
def test_fast_and_checked_decoders_agree_on_numbers(text: str) -> None:
    """A number text decodes to the same exact value (or the same poison message) either way."""
    # given a number text, plain or odd, alone, as a map's attribute and in a number set
    for decode, typed in (
        (decode_value, {"N": text}),
        (decode_item, {"n": {"N": text}}),
        (decode_value, {"NS": [text, "1"]}),
    ):
        # when it is decoded with the fast path and by the checked decoder alone
        fast, checked = both(decode, typed)
        # then both give the same value of the same type, or the same error
        assert fast == checked, typed


@agreement
@given(typed_items)
@example({"price": {"N": "126.75"}, "sizes": {"NS": ["44.5", "44.50", "9", "10"]}})
@example({"rating": {"N": "3.0"}, "dimensions": {"M": {"weight_kg": {"N": "0.120"}}}})
@example({"images": {"L": [{"M": {"width": {"N": "1200"}}}, {"M": []}]}})
def test_fast_and_checked_decoders_agree_on_items(item: dict[str, object]) -> None:
    """An item decodes to the same document (or the same poison message, naming the same path)."""
    # given an item of typed values, nested, some of them bad
    # when it is decoded with the fast path and by the checked decoder alone
    fast, checked = both(decode_item, item)
    # then both give the same document, types and order included, or the same error
    assert fast == checked


def test_equal_numbers_of_a_set_keep_their_order_and_forms() -> None:
    """Equal numbers of a number set keep their given order and spelling on the fast path."""
    # given a number set holding equal values in different forms
    typed = {"NS": ["44.50", "2", "44.5"]}
    # when it is decoded
    fast, checked = both(decode_value, typed)
    # then the order is by value, ties as given, the same as the checked decoder's
    assert fast == checked
    assert [repr(number) for number in decode_value(typed)] == [
        "2",
        repr(Decimal("44.50")),
        repr(Decimal("44.5")),
    ]
