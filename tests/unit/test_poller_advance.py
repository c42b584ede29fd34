"""After a batch: the new checkpoint and the retry position, from the failed sequence numbers."""

from __future__ import annotations

from syncer.runner.cursor import BatchAdvance, advance_after_batch

BATCH = ["1000000000000000000101", "1000000000000000000205", "1000000000000000000309"]


def test_a_successful_batch_checkpoints_its_last_record() -> None:
    """No failure: the checkpoint moves to the last record and nothing is read again."""
    assert advance_after_batch(BATCH, []) == BatchAdvance(BATCH[2], None)


def test_a_failure_in_the_middle_checkpoints_the_record_before_it() -> None:
    """The checkpoint stops just before the failed record, which is read again."""
    assert advance_after_batch(BATCH, [BATCH[1]]) == BatchAdvance(BATCH[0], BATCH[1])


def test_the_lowest_failed_record_decides() -> None:
    """With several failures, the lowest one (not the first listed) is where the retry starts."""
    assert advance_after_batch(BATCH, [BATCH[2], BATCH[1]]) == BatchAdvance(BATCH[0], BATCH[1])


def test_a_failed_first_record_leaves_the_checkpoint_alone() -> None:
    """When the first record failed nothing is checkpointed and the whole batch is read again."""
    assert advance_after_batch(BATCH, [BATCH[0], BATCH[2]]) == BatchAdvance(None, BATCH[0])


def test_sequence_numbers_compare_as_integers_not_text() -> None:
    """Sequence number 99 is lower than 100: comparing text would retry from the wrong record."""
    batch = ["98", "99", "100"]
    assert advance_after_batch(batch, ["100", "99"]) == BatchAdvance("98", "99")


def test_a_failed_number_outside_the_batch_retries_the_whole_batch() -> None:
    """A reported number that is not in the batch cannot be placed, so nothing advances."""
    assert advance_after_batch(BATCH, ["7"]) == BatchAdvance(None, BATCH[0])


def test_an_empty_batch_changes_nothing() -> None:
    """No records: no checkpoint and no retry."""
    assert advance_after_batch([], []) == BatchAdvance(None, None)
