"""Typed DynamoDB attribute values decode to plain, exact JSON values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from syncer.core import jsoncodec
from syncer.core.attributes import decode_item, decode_number, decode_value
from syncer.errors import PoisonRecordError

DIGITS_38 = "12345678901234567890123456789012345678"


@pytest.mark.parametrize(
    ("typed", "plain"),
    [
        ({"S": "café"}, "café"),
        ({"S": ""}, ""),
        ({"N": "42"}, 42),
        ({"N": "-7"}, -7),
        ({"BOOL": True}, True),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"B": "3q2+7w=="}, "3q2+7w=="),
        ({"M": {"a": {"S": "x"}}}, {"a": "x"}),
        ({"L": [{"S": "x"}, {"N": "1"}]}, ["x", 1]),
        ({"SS": ["b", "a"]}, ["a", "b"]),
        ({"NS": ["10", "9"]}, [9, 10]),
        ({"BS": ["Ag==", "AQ=="]}, ["AQ==", "Ag=="]),
    ],
    ids=[
        "S",
        "S-empty",
        "N",
        "N-negative",
        "BOOL-true",
        "BOOL-false",
        "NULL",
        "B",
        "M",
        "L",
        "SS",
        "NS",
        "BS",
    ],
)
def test_each_type_decodes_to_its_plain_value(typed: dict[str, object], plain: object) -> None:
    """Each attribute type decodes to the plain JSON value it stands for."""
    # given a typed attribute value
    # when it is decoded
    decoded = decode_value(typed)
    # then it is the plain value
    assert decoded == plain


def test_every_type_of_the_event_file_decodes_to_plain_json(load_event) -> None:
    """The item with every attribute type decodes to exactly the expected plain document."""
    # given the NewImage of the all-types event
    image = load_event("all_attribute_types.json")["Records"][0]["dynamodb"]["NewImage"]
    # when it is decoded
    item = decode_item(image)
    # then every attribute has its plain JSON form
    assert item == {
        "pk": "p-700",
        "sk": "v1",
        "title": "Laufschuh 👟 運動靴 «ß»",
        "empty_string": "",
        "price": Decimal("129.95"),
        "stock": 0,
        "serial": int(DIGITS_38),
        "drift": Decimal("-1.5E-7"),
        "balance": -98765432109876543210987654321098765432,
        "checksum": "3q2+7w==",
        "active": True,
        "discontinued": False,
        "replaced_by": None,
        "sizes": [-1, Decimal("9.5"), 10, 44],
        "colours": ["blue", "red", "ámbar", "緑"],
        "thumbnails": ["/w==", "AA==", "AQI="],
        "dimensions": {
            "cm": {"length": Decimal("31.5"), "width": 12},
            "labels": ["box", 3, None, [False, {"deep": "😀"}]],
        },
        "history": [
            {"at": 1704067200, "price": Decimal("139.95")},
            {"at": 1704067600, "price": Decimal("129.95")},
        ],
        "empty_list": [],
        "empty_map": {},
    }


def test_decoded_event_item_round_trips_through_json(load_event) -> None:
    """The decoded all-types item encodes to JSON that reads back with the same unicode text."""
    # given the decoded all-types item
    item = decode_item(load_event("all_attribute_types.json")["Records"][0]["dynamodb"]["NewImage"])
    # when it is encoded and read back
    reread = jsoncodec.loads(jsoncodec.dumps(item))
    # then text, nesting and binary survive unchanged
    assert reread["title"] == "Laufschuh 👟 運動靴 «ß»"
    assert reread["dimensions"]["labels"][3][1] == {"deep": "😀"}
    assert reread["thumbnails"] == ["/w==", "AA==", "AQI="]


def test_38_digit_integer_survives_json_encoding_digit_for_digit() -> None:
    """A 38-digit integer is written to JSON with every digit, not rounded through float."""
    # given a 38-digit number attribute
    value = decode_value({"N": DIGITS_38})
    # when it is encoded as JSON
    encoded = jsoncodec.dumps({"serial": value})
    # then the digits are unchanged
    assert encoded == b'{"serial":' + DIGITS_38.encode() + b"}"


def test_negative_38_digit_integer_survives_json_encoding() -> None:
    """A negative 38-digit integer keeps its sign and every digit in JSON."""
    # given a negative 38-digit number
    value = decode_number("-" + DIGITS_38)
    # when it is encoded
    encoded = jsoncodec.dumps(value)
    # then it is written verbatim
    assert encoded == b"-" + DIGITS_38.encode()


@pytest.mark.parametrize(
    "text", ["-1.5E-7", "129.95", "0.000001", "3.14159265358979323846264338327950288"]
)
def test_decimal_keeps_its_digits_in_json(text: str) -> None:
    """A non-integer number reaches JSON with its exact digits."""
    # given a decimal number attribute
    value = decode_number(text)
    # when it is encoded and read back as Decimal
    encoded = jsoncodec.dumps(value)
    # then its value is exactly the original
    assert Decimal(encoded.decode()) == Decimal(text)


def test_decimal_never_becomes_a_float() -> None:
    """A non-integer number decodes to Decimal, never to a lossy float."""
    # given a decimal number text
    # when it is decoded
    value = decode_number("0.1")
    # then it is an exact Decimal
    assert isinstance(value, Decimal)
    assert value == Decimal("0.1")


@pytest.mark.parametrize("text", ["1E+2", "100.000", "-0"])
def test_integral_number_written_in_other_forms_decodes_to_int(text: str) -> None:
    """A number with an integral value decodes to an int however it was spelled."""
    # given an integral number in exponent, trailing-zero or signed-zero form
    # when it is decoded
    value = decode_number(text)
    # then it is a plain int
    assert type(value) is int
    assert value == int(Decimal(text))


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_number_is_rejected(text: str) -> None:
    """NaN and infinities are not DynamoDB numbers and are rejected."""
    # given a non-finite number text
    # when it is decoded
    # then the record is poison
    with pytest.raises(PoisonRecordError, match="unparsable number"):
        decode_value({"N": text}, "price")


def test_unparsable_number_is_rejected_with_its_path() -> None:
    """An unparsable number is rejected and the error names where it was."""
    # given a number that is not a number, nested in a map
    typed = {"dimensions": {"M": {"width": {"N": "12abc"}}}}
    # when the item is decoded
    # then the error names the path
    with pytest.raises(PoisonRecordError, match=r"dimensions\.width"):
        decode_item(typed, "NewImage")


@pytest.mark.parametrize("text", ["1_000", " 5", "5 "])
def test_number_with_python_only_syntax_is_rejected(text: str) -> None:
    """Number text DynamoDB never produces (underscores, spaces) is rejected, not guessed."""
    # given a number in a syntax only Python's Decimal accepts
    # when it is decoded
    # then it is poison
    with pytest.raises(PoisonRecordError):
        decode_number(text, "price")


def test_unknown_type_is_rejected_naming_the_path() -> None:
    """An unknown type tag is rejected with an error naming the attribute's full path."""
    # given an unknown type nested in a list in a map
    typed = {"dimensions": {"M": {"labels": {"L": [{"S": "ok"}, {"X": "1"}]}}}}
    # when the item is decoded
    # then the error names the type and the path
    with pytest.raises(
        PoisonRecordError, match=r"unknown attribute type 'X' at NewImage\.dimensions\.labels\[1\]"
    ):
        decode_item(typed, "NewImage")


def test_non_base64_binary_is_rejected() -> None:
    """A binary value that is not base64 text is rejected."""
    # given a B value that is not base64
    # when it is decoded
    # then it is poison
    with pytest.raises(PoisonRecordError, match="not base64"):
        decode_value({"B": "not base64!"}, "thumbnail")


def test_binary_bytes_from_boto3_become_base64_text() -> None:
    """Binary given as bytes (as boto3 returns it) becomes the same base64 text Lambda sends."""
    # given a binary value as raw bytes
    # when it is decoded
    value = decode_value({"B": b"\xde\xad\xbe\xef"})
    # then it is base64 text
    assert value == "3q2+7w=="


def test_number_set_sorts_numerically_not_as_text() -> None:
    """A number set comes out in numeric order, so 9 sorts before 10."""
    # given a number set whose text order differs from numeric order
    # when it is decoded
    value = decode_value({"NS": ["10", "9", "-2.5", "100"]})
    # then it is sorted by value
    assert value == [Decimal("-2.5"), 9, 10, 100]


@pytest.mark.parametrize(
    "typed",
    [
        {"S": 1},
        {"BOOL": "true"},
        {"NULL": False},
        {"L": {}},
        {"SS": [1]},
        {"S": "a", "N": "1"},
        "x",
    ],
    ids=[
        "S-not-str",
        "BOOL-not-bool",
        "NULL-false",
        "L-not-list",
        "SS-not-str",
        "two-tags",
        "not-a-map",
    ],
)
def test_wrong_shape_is_rejected(typed: object) -> None:
    """A typed value of the wrong shape is poison, never silently coerced."""
    # given a badly shaped typed value
    # when it is decoded
    # then it is rejected
    with pytest.raises(PoisonRecordError):
        decode_value(typed, "attr")
