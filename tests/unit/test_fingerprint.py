"""The content fingerprint is the same for an item and for its document as OpenSearch returns it."""

from __future__ import annotations

import json

from syncer.core.attributes import decode_item
from syncer.core.fingerprint import content_fingerprint
from syncer.core.jsoncodec import dumps


def _read_back(document: dict[str, object]) -> dict[str, object]:
    """A document written by syncer and read back through opensearch-py's JSON reader."""
    loaded: dict[str, object] = json.loads(dumps(document))
    return loaded


def test_numbers_beyond_64_bits_fingerprint_alike_on_both_sides() -> None:
    """A 38-digit integer and a long negative one hash alike from the item and from the index."""
    # given an item with integers far above 2^64, a decimal, a set and binary
    item = decode_item(
        {
            "pk": {"S": "a"},
            "big": {"N": "12345678901234567890123456789012345678"},
            "negative": {"N": "-98765432109876543210"},
            "price": {"N": "1.50"},
            "tags": {"SS": ["b", "a"]},
            "blob": {"B": "AAEC"},
        }
    )
    # when both sides are fingerprinted
    # then they are equal
    assert content_fingerprint(item) == content_fingerprint(_read_back(item))


def test_syncer_metadata_is_left_out_and_content_counts() -> None:
    """``_syncer`` does not change the fingerprint; a changed attribute does."""
    base = {"pk": "a", "price": 1}
    assert content_fingerprint(base) == content_fingerprint({**base, "_syncer": {"seq": "1"}})
    assert content_fingerprint(base) != content_fingerprint({**base, "price": 2})
