"""The decision per key (acknowledge, retry, dead-letter) is a pure function of the stage results."""

from __future__ import annotations

import pytest

from syncer.core.documents import Settled
from syncer.core.outcome import KeyStages, RecordAction, decide

ACK, RETRY, DEAD = RecordAction.ACKNOWLEDGE, RecordAction.RETRY, RecordAction.DEADLETTER


@pytest.mark.parametrize(
    ("lookup_failed", "search", "cache_failed", "policy", "action"),
    [
        (False, Settled.WRITTEN, False, "retry", ACK),
        (False, Settled.TOMBSTONED, False, "retry", ACK),
        (False, Settled.SKIPPED, False, "retry", ACK),
        (False, Settled.FAILED, False, "retry", RETRY),
        (False, Settled.REJECTED, False, "retry", DEAD),
        (True, None, False, "retry", RETRY),
        (False, None, False, "retry", RETRY),  # search never settled it
        (False, Settled.WRITTEN, True, "retry", RETRY),
        (False, Settled.WRITTEN, True, "deadletter", DEAD),
        # a rejected document still needs its invalidation first (issue 11, case 9)
        (False, Settled.REJECTED, True, "retry", RETRY),
        (False, Settled.REJECTED, True, "deadletter", DEAD),
        (False, Settled.FAILED, True, "deadletter", RETRY),
    ],
)
def test_decide(
    lookup_failed: bool,
    search: Settled | None,
    cache_failed: bool,
    policy: str,
    action: RecordAction,
) -> None:
    """Each combination of stage results maps to the documented action."""
    # given the stage results of one key
    stages = KeyStages(lookup_failed=lookup_failed, search=search, cache_failed=cache_failed)
    # when the key's records are decided
    # then the action is the table's
    assert decide(stages, policy) is action
