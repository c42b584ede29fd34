"""Decode DynamoDB typed attribute values (``{"S": "x"}``) into plain JSON-ready values.

Numbers keep every digit: integers become ``int`` (arbitrary size), other numbers ``Decimal``;
``syncer.core.jsoncodec`` writes both as JSON numbers without going through float. Sets become sorted
arrays and binary values base64 text, so one item always has one JSON form.

Every value first takes a fast path that accepts only the plain shapes Lambda's JSON parser
produces (``dict``, ``list``, ``str``, ``bool``) and checks them with cheap string methods
instead of regular expressions. Anything else, valid or not, falls through to the checked
decoder, which gives the same results and names the path of a bad value (bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Container, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from syncer.errors import PoisonRecordError

_INTEGER = re.compile(r"-?[0-9]+")
# Decimal() also takes "1_000", " 5" and "Infinity"; DynamoDB never sends those.
_NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_MAX_NUMBER_TEXT = 160  # 38 digits, sign, point and an exponent fit easily
_MIN_NATIVE_INT = -(2**63)
_MAX_NATIVE_INT = 2**64 - 1
# Text made only of these characters, not starting with "+", is a number for Decimal() exactly
# when _NUMBER matches it: what Decimal() accepts beyond _NUMBER needs a leading "+",
# whitespace, "_" or letters other than e/E (Infinity, NaN).
_NUMBER_CHARS = "0123456789.-+eE"
_NATIVE_INT_DIGITS = 18  # any integer of at most 18 digits fits orjson's 64-bit range


class BigInt(int):
    """An integer outside orjson's 64-bit range; ``syncer.core.jsoncodec`` writes it digit for digit."""

    __slots__ = ()


def _exact_int(value: int) -> int:
    return value if _MIN_NATIVE_INT <= value <= _MAX_NATIVE_INT else BigInt(value)


# ---------------------------------------------------------------------------------------------
# Fast path: plain shapes only; returns _UNUSUAL for anything it does not vouch for.
# ---------------------------------------------------------------------------------------------
class _Unusual:
    """Marker: the fast path declines this value; the checked decoder decides."""


_UNUSUAL: Any = _Unusual()


def _fast_number(text: object) -> Any:
    if type(text) is not str:
        return _UNUSUAL
    if text.isdigit() and text.isascii():  # [0-9]+, the most common number
        if len(text) <= _NATIVE_INT_DIGITS:
            return int(text)
        return _exact_int(int(text)) if len(text) <= _MAX_NUMBER_TEXT else _UNUSUAL
    if not text.isascii() or len(text) > _MAX_NUMBER_TEXT:
        return _UNUSUAL
    unsigned = text[1:] if text[:1] == "-" else text
    whole, point, fraction = unsigned.partition(".")
    if (
        point
        and (whole.isdigit() or not whole)
        and fraction.isdigit()
        and fraction.rstrip("0")  # a non-zero fraction: not integral, no exponent
    ):
        return Decimal(text)
    if unsigned.isdigit():  # a negative integer
        return _exact_int(int(text))
    if not text or text[0] == "+" or text.lstrip(_NUMBER_CHARS):
        return _UNUSUAL
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return _UNUSUAL
    if number == number.to_integral_value() and abs(number.adjusted()) < 40:
        return _exact_int(int(number))
    return number


def _fast_strings(values: object) -> Any:
    if type(values) is not list:
        return _UNUSUAL
    for element in values:
        if type(element) is not str:
            return _UNUSUAL
    return sorted(values)


def _fast_numbers(values: object) -> Any:
    if type(values) is not list:
        return _UNUSUAL
    numbers = []
    for text in values:
        # Integers (the commonest numbers) as _fast_number takes them, without its call.
        if type(text) is not str:
            return _UNUSUAL
        if text.isdigit() and len(text) <= _NATIVE_INT_DIGITS and text.isascii():
            number = int(text)
        else:
            number = _fast_number(text)
            if number is _UNUSUAL:
                return _UNUSUAL
        numbers.append(number)
    # int and Decimal compare exactly with each other, so this is the order of
    # sorting by Decimal value, ties (equal values) kept in their given order.
    numbers.sort()
    return numbers


def _fast_binaries(values: object) -> Any:
    if type(values) is not list:
        return _UNUSUAL
    try:
        return sorted(decode_binary(value) for value in values)
    except PoisonRecordError:
        return _UNUSUAL


def _fast_value(typed: object) -> Any:
    if type(typed) is not dict or len(typed) != 1:
        return _UNUSUAL
    ((tag, value),) = typed.items()
    if tag == "S":
        return value if type(value) is str else _UNUSUAL
    if tag == "N":
        return _fast_number(value)
    if tag == "M":
        return _fast_map(value)
    if tag == "L":
        return _fast_list(value)
    if tag == "BOOL":
        return value if type(value) is bool else _UNUSUAL
    if tag == "SS":
        return _fast_strings(value)
    if tag == "NS":
        return _fast_numbers(value)
    if tag == "NULL":
        return None if value is True else _UNUSUAL
    if tag == "B":
        try:
            return decode_binary(value)
        except PoisonRecordError:
            return _UNUSUAL
    if tag == "BS":
        return _fast_binaries(value)
    return _UNUSUAL


def _fast_list(values: object) -> Any:
    if type(values) is not list:
        return _UNUSUAL
    decoded = []
    for typed in values:
        # Maps are the commonest elements of a list (records of a one-to-many): no dispatch.
        if type(typed) is dict and len(typed) == 1 and "M" in typed:
            value = _fast_map(typed["M"])
        else:
            value = _fast_value(typed)
        if value is _UNUSUAL:
            return _UNUSUAL
        decoded.append(value)
    return decoded


def _fast_map(typed_item: object) -> Any:
    if type(typed_item) is not dict:
        return _UNUSUAL
    decoded: dict[str, Any] = {}
    for name, typed in typed_item.items():
        if type(typed) is not dict or len(typed) != 1 or type(name) is not str:
            return _UNUSUAL
        # Strings and numbers are most attributes: look them up before unpacking the value,
        # and take the commonest numbers (as _fast_number would) without a call.
        if "S" in typed:
            value = typed["S"]
            if type(value) is not str:
                return _UNUSUAL
        elif "N" in typed:
            value = typed["N"]
            if type(value) is not str:
                return _UNUSUAL
            if value.isdigit() and len(value) <= _NATIVE_INT_DIGITS and value.isascii():
                value = int(value)
            else:
                whole, point, fraction = value.partition(".")
                if (
                    point
                    and fraction.isdigit()
                    and whole.isdigit()
                    and fraction[-1] != "0"  # not integral: Decimal of the text as it is
                    and value.isascii()
                    and len(value) <= _MAX_NUMBER_TEXT
                ):
                    value = Decimal(value)
                else:
                    value = _fast_number(value)
                    if value is _UNUSUAL:
                        return _UNUSUAL
        else:
            value = _fast_value(typed)
            if value is _UNUSUAL:
                return _UNUSUAL
        decoded[name] = value
    return decoded


# ---------------------------------------------------------------------------------------------
# The checked decoder: every shape, exact error messages with the path of the bad value.
# ---------------------------------------------------------------------------------------------
def decode_number(text: object, path: str = "") -> int | Decimal:
    """Turn a DynamoDB ``N`` string into an exact ``int`` or finite ``Decimal``."""
    number: int | Decimal = _fast_number(text)
    if number is not _UNUSUAL:
        return number
    if not isinstance(text, str):
        raise PoisonRecordError(f"number at {path or '.'} is not a string: {text!r:.60}")
    if len(text) > _MAX_NUMBER_TEXT:
        raise PoisonRecordError(
            f"number at {path or '.'} has {len(text)} characters; DynamoDB allows 38 digits"
        )
    if _INTEGER.fullmatch(text):
        return _exact_int(int(text))
    if not _NUMBER.fullmatch(text):
        raise PoisonRecordError(f"unparsable number at {path or '.'}: {text!r:.60}")
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        raise PoisonRecordError(f"unparsable number at {path or '.'}: {text!r:.60}") from None
    if number == number.to_integral_value() and abs(number.adjusted()) < 40:
        return _exact_int(int(number))
    return number


def decode_binary(value: object, path: str = "") -> str:
    """Return binary as base64 text: Lambda JSON gives base64 already, boto3 gives bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, str):
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise PoisonRecordError(
                f"binary at {path or '.'} is not base64: {value!r:.60}"
            ) from None
        return value
    raise PoisonRecordError(f"binary at {path or '.'} is neither bytes nor base64: {value!r:.60}")


def _expect(kind: type | tuple[type, ...], value: object, tag: str, path: str) -> None:
    if not isinstance(value, kind):
        raise PoisonRecordError(f"{tag} at {path or '.'} has the wrong shape: {value!r:.60}")


def _number_sort_key(number: int | Decimal) -> Decimal:
    return Decimal(number)


def decode_value(typed: object, path: str = "") -> Any:
    """Decode one typed attribute value; raise ``PoisonRecordError`` naming the bad path."""
    decoded = _fast_value(typed)
    if decoded is not _UNUSUAL:
        return decoded
    if not isinstance(typed, Mapping) or len(typed) != 1:
        raise PoisonRecordError(
            f"attribute at {path or '.'} is not a one-key typed value: {typed!r:.80}"
        )
    ((tag, value),) = typed.items()
    if tag == "S":
        _expect(str, value, tag, path)
        return value
    if tag == "N":
        return decode_number(value, path)
    if tag == "BOOL":
        _expect(bool, value, tag, path)
        return value
    if tag == "NULL":
        if value is not True:
            raise PoisonRecordError(f"NULL at {path or '.'} must be true: {value!r:.60}")
        return None
    if tag == "M":
        return decode_item(value, path)
    if tag == "L":
        _expect(list, value, tag, path)
        return [decode_value(element, f"{path}[{i}]") for i, element in enumerate(value)]
    if tag == "B":
        return decode_binary(value, path)
    if tag == "SS":
        _expect(list, value, tag, path)
        for element in value:
            _expect(str, element, tag, path)
        return sorted(value)
    if tag == "NS":
        _expect(list, value, tag, path)
        return sorted((decode_number(v, path) for v in value), key=_number_sort_key)
    if tag == "BS":
        _expect(list, value, tag, path)
        return sorted(decode_binary(v, path) for v in value)
    raise PoisonRecordError(f"unknown attribute type {tag!r:.20} at {path or '.'}")


def decode_item(typed_item: object, path: str = "") -> dict[str, Any]:
    """Decode a map of attribute name to typed value (an item, a key or an ``M`` value)."""
    fast: dict[str, Any] = _fast_map(typed_item)
    if fast is not _UNUSUAL:
        return fast
    if not isinstance(typed_item, Mapping):
        raise PoisonRecordError(f"map at {path or '.'} is not an object: {typed_item!r:.60}")
    decoded: dict[str, Any] = {}
    for name, typed in typed_item.items():
        if not isinstance(name, str):
            raise PoisonRecordError(
                f"attribute name at {path or '.'} is not a string: {name!r:.60}"
            )
        decoded[name] = decode_value(typed, f"{path}.{name}" if path else name)
    return decoded


def decode_attributes(
    typed_item: object, names: Iterable[str], skip: Container[str] = (), path: str = ""
) -> dict[str, Any]:
    """Decode only the attributes ``names`` of a typed map; the others are neither read nor checked.

    Names in ``skip`` (read from elsewhere, such as the key attributes) and names the map does
    not hold are left out. A bad value among those read is poison, with the same message
    ``decode_item`` gives; a map that is not an object is poison whatever is asked of it.
    """
    if type(typed_item) is not dict and not isinstance(typed_item, Mapping):
        raise PoisonRecordError(f"map at {path or '.'} is not an object: {typed_item!r:.60}")
    decoded: dict[str, Any] = {}
    for name in names:
        if name in skip or name not in typed_item:
            continue
        decoded[name] = decode_value(typed_item[name], f"{path}.{name}" if path else name)
    return decoded
