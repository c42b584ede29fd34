"""``version_from_meta`` reads every field as it always did, whatever a document holds."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

# _int_or_none is the checked reading every field had before the int fast path: the fast
# path must give what it gives, for any value.
from syncer.core.versions import Version, _int_or_none, version_from_meta

_INT_FIELDS = {
    "stream": "stream_ms",
    "changed_at": "changed_at_ms",
    "read_from": "read_from_ms",
    "read_to": "read_to_ms",
    "change_from_us": "change_from_us",
    "change_to_us": "change_to_us",
}
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.integers().map(str),
    st.lists(st.integers(), max_size=1),
)


@given(
    fields=st.dictionaries(st.sampled_from(sorted(_INT_FIELDS)), _VALUES),
    seq=st.one_of(st.none(), st.integers(0, 10**40).map(str)),
    event_id=st.one_of(st.none(), st.text(max_size=3), st.integers()),
)
def test_every_field_is_read_by_the_one_rule(
    fields: dict[str, Any], seq: str | None, event_id: object
) -> None:
    meta: dict[str, Any] = {**fields, "event_id": event_id}
    if seq is not None:
        meta["seq"] = seq
    expected = Version(
        seq=None if seq is None else int(seq),
        event_id=event_id if isinstance(event_id, str) else None,
        **{_INT_FIELDS[name]: _int_or_none(value) for name, value in fields.items()},
    )
    assert version_from_meta(meta) == expected
