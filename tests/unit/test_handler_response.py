"""BatchOutcome becomes Lambda's partial batch response: exactly the documented shape."""

from __future__ import annotations

import json

from syncer.core.outcome import BatchOutcome


def _outcome(*failed: str) -> BatchOutcome:
    return BatchOutcome(
        records_in=4,
        keys=2,
        indexed=1,
        deleted=1,
        skipped_stale=0,
        invalidated=3,
        dead_lettered=0,
        failed_sequence_numbers=failed,
    )


def test_failed_records_are_listed_as_item_identifiers() -> None:
    """Each failed sequence number becomes one {"itemIdentifier": ...} entry, in order."""
    # given an outcome with two failed sequence numbers
    outcome = _outcome("111000000000000000057", "111000000000000000210")
    # when the Lambda response is built
    response = outcome.lambda_response()
    # then it lists them under batchItemFailures with the exact key names
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": "111000000000000000057"},
            {"itemIdentifier": "111000000000000000210"},
        ]
    }


def test_nothing_failed_gives_an_empty_list() -> None:
    """A fully durable batch answers with an empty batchItemFailures list."""
    # given an outcome without failures
    outcome = _outcome()
    # when the Lambda response is built
    response = outcome.lambda_response()
    # then the list is empty (an empty list means full success to Lambda)
    assert response == {"batchItemFailures": []}


def test_item_identifier_is_the_sequence_text_unchanged() -> None:
    """A 40-digit sequence number is returned as the same string, never as a number."""
    # given a 40-digit sequence number
    sequence = "5000000000000000000000000000000000000470"
    # when the Lambda response is built
    (entry,) = _outcome(sequence).lambda_response()["batchItemFailures"]
    # then it is the identical string
    assert entry == {"itemIdentifier": sequence}
    assert isinstance(entry["itemIdentifier"], str)


def test_response_is_plain_json() -> None:
    """The response serialises with the standard json module, as the Lambda runtime does."""
    # given an outcome with one failure
    outcome = _outcome("111000000000000000057")
    # when the response is serialised
    text = json.dumps(outcome.lambda_response())
    # then it reads back unchanged
    assert json.loads(text) == {"batchItemFailures": [{"itemIdentifier": "111000000000000000057"}]}
