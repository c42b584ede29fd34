"""Cache keys are grouped by Redis Cluster hash slot so no UNLINK ever spans two slots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syncer.sinks.cache import UNLINK_CHUNK, Unlink, key_slot, unlinks_by_slot


def test_key_slot_matches_redis_for_known_keys() -> None:
    """CRC16 mod 16384, as CLUSTER KEYSLOT answers (values from a real Redis 7 node)."""
    assert key_slot("foo") == 12182
    assert key_slot("product:p1") == key_slot("product:p1")
    assert key_slot("") == 0


def test_keys_with_one_hash_tag_share_a_slot() -> None:
    """Only the part inside the first ``{...}`` is hashed, so tagged keys land together."""
    assert key_slot("{tenant}:product:1") == key_slot("{tenant}:category:9") == key_slot("tenant")
    assert key_slot("{}:a") == 4330  # an empty tag hashes the whole key (CLUSTER KEYSLOT)


def test_tagged_keys_become_one_unlink() -> None:
    """Keys sharing a hash tag are unlinked by one command; others get their own."""
    keys = ["{t}:product:1", "{t}:product:2", "{t}:category:x", "plain:1"]
    unlinks = unlinks_by_slot(keys, key_slot)
    tagged = next(u for u in unlinks if u.slot == key_slot("t"))
    assert tagged.keys == ("{t}:category:x", "{t}:product:1", "{t}:product:2")
    assert sum(len(u.keys) for u in unlinks) == 4


def test_a_crowded_slot_is_cut_into_chunks() -> None:
    """More than UNLINK_CHUNK keys in one slot become several commands of at most that size."""
    keys = [f"{{same}}:{n}" for n in range(UNLINK_CHUNK * 2 + 1)]
    unlinks = unlinks_by_slot(keys, key_slot)
    assert [len(u.keys) for u in unlinks] == [UNLINK_CHUNK, UNLINK_CHUNK, 1]
    assert {u.slot for u in unlinks} == {key_slot("same")}


@given(st.lists(st.text(max_size=12), max_size=60))
def test_every_key_is_unlinked_once_within_its_own_slot(keys: list[str]) -> None:
    """Each distinct key is in exactly one command, and every command stays in one slot."""
    unlinks = unlinks_by_slot(keys, key_slot)
    flat = [key for unlink in unlinks for key in unlink.keys]
    assert sorted(flat) == sorted(set(keys))
    assert all(key_slot(key) == unlink.slot for unlink in unlinks for key in unlink.keys)
    assert all(isinstance(u, Unlink) and u.ask_node is None for u in unlinks)
