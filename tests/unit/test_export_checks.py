"""The checks an export passes before anything of it is applied, and the recognition of a state
the index already holds (issue 24, defects 3, 5 and 10), pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncer.config import TableConfig
from syncer.core.documents import SYNCER_FIELD, indexed_document
from syncer.core.exports import (
    ExportRefusedError,
    check_export_age,
    check_export_of_table,
    holds_this_state,
    parse_summary,
    table_name_of,
)
from syncer.core.plan import document_body, tombstone_body
from syncer.core.versions import read_version

DAY_MS = 86_400_000
EXPORT_MS = 1_604_474_914_028
ARN_A = "arn:aws:dynamodb:us-east-1:111122223333:table/orders"
ARN_B = "arn:aws:dynamodb:us-east-1:111122223333:table/customers"
TABLE = TableConfig(name="orders", index="orders", exclude_attributes=("cost",))


def _summary(**changes: object) -> Any:
    raw = {
        "exportArn": f"{ARN_A}/export/01",
        "tableArn": ARN_A,
        "exportTime": "2020-11-04T07:28:34.028Z",
        "s3Bucket": "b",
        "manifestFilesS3Key": "k",
        "itemCount": 0,
        **changes,
    }
    return parse_summary(json.dumps({k: v for k, v in raw.items() if v is not None}).encode())


def test_the_table_name_of_an_arn() -> None:
    """The name after ``table/``; an export ARN's suffix is not part of it."""
    assert table_name_of(ARN_A) == "orders"
    assert table_name_of(f"{ARN_A}/export/01") == "orders"
    assert table_name_of("not an arn") == ""


def test_an_export_of_the_configured_table_passes() -> None:
    """The same ARN as DescribeTable's, or the same name when the ARN is not known."""
    check_export_of_table(_summary(), "orders", ARN_A)
    check_export_of_table(_summary(), "orders", "")


@pytest.mark.parametrize(
    ("table", "arn"),
    [
        ("orders", ARN_B.replace("customers", "orders").replace("1111", "9999")),  # other account
        ("customers", ARN_B),
        ("customers", ""),
    ],
)
def test_another_tables_export_is_refused_naming_both(table: str, arn: str) -> None:
    """Another table's export (or the same name in another account) names both tables."""
    with pytest.raises(ExportRefusedError) as refused:
        check_export_of_table(_summary(), table, arn)
    assert ARN_A in str(refused.value)
    assert repr(table) in str(refused.value)


def test_an_export_without_a_table_arn_is_refused() -> None:
    """Without tableArn nothing says whose export it is."""
    with pytest.raises(ExportRefusedError, match="no tableArn"):
        check_export_of_table(_summary(tableArn=None), "orders", ARN_A)


def test_an_export_younger_than_the_retention_passes() -> None:
    """14 days old against a 15-day retention."""
    check_export_age(_summary(), EXPORT_MS + 14 * DAY_MS, 15 * 86_400)


def test_an_export_older_than_the_retention_is_refused_with_the_reason() -> None:
    """18 days old: deletes older than the retention have no tombstone to stop it."""
    with pytest.raises(ExportRefusedError, match=r"18\.0 days old.*15-day tombstone"):
        check_export_age(_summary(), EXPORT_MS + 18 * DAY_MS, 15 * 86_400)


def test_the_export_age_counts_from_its_earliest_possible_state() -> None:
    """exportTime - 60 s must be within the retention: a minute short of it is refused."""
    retention_s = 15 * 86_400
    check_export_age(_summary(), EXPORT_MS - 60_000 + retention_s * 1000, retention_s)
    with pytest.raises(ExportRefusedError):
        check_export_age(_summary(), EXPORT_MS - 60_000 + retention_s * 1000 + 1, retention_s)


VERSION = read_version(1000.0, 1120.0)
ITEM = {"pk": "a", "price": 5, "cost": 1}


def _indexed(body: dict[str, Any]) -> Any:
    return indexed_document(json.loads(json.dumps(body)), 1, 1)


def test_a_document_written_from_the_same_line_is_recognised() -> None:
    """Same read interval, same content (excluded attributes left out as when written)."""
    written = _indexed(document_body(ITEM, TABLE, VERSION))
    assert holds_this_state(written, VERSION, ITEM, TABLE)


@pytest.mark.parametrize(
    "body",
    [
        document_body({**ITEM, "price": 6}, TABLE, VERSION),  # other content, same interval
        document_body(ITEM, TABLE, read_version(1000.0, 1121.0)),  # another interval
        tombstone_body(TABLE, VERSION),  # a tombstone
        {"pk": "a", "price": 5},  # no version at all
    ],
)
def test_anything_else_is_not_this_state(body: dict[str, Any]) -> None:
    """A different content, interval or kind is ordered (or re-read) as before."""
    assert not holds_this_state(_indexed(body), VERSION, ITEM, TABLE)


def test_a_tombstone_from_the_same_line_is_recognised() -> None:
    """A delete line met again: the same tombstone."""
    assert holds_this_state(_indexed(tombstone_body(TABLE, VERSION)), VERSION, None, TABLE)
    assert not holds_this_state(None, VERSION, None, TABLE)


def test_a_partial_source_is_never_taken_for_the_whole() -> None:
    """Only ``_syncer`` read back (no whole source): not recognised, so re-read as before."""
    whole = document_body(ITEM, TABLE, VERSION)
    assert not holds_this_state(_indexed({SYNCER_FIELD: whole[SYNCER_FIELD]}), VERSION, ITEM, TABLE)
