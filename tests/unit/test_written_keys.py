"""A batch's written keys are built only for the keys the consistency sampler reads, and the
sampler picks exactly the keys it picked when all were built."""

from __future__ import annotations

import random
import tomllib
from typing import Any

import pytest

from syncer.config import Config, parse_config
from syncer.core.consistency import WrittenKey, choose_samples
from syncer.core.work import KeyWork
from syncer.pipeline import process_batch
from tests.fakes import FakeSearch, fake_sinks

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/catalog/stream/2024-01-01T00:00:00.000"
SEQ = 300000000000000000000


def _config() -> Config:
    text = '[[tables]]\nname = "catalog"\nindex = "catalog"\ncache_keys = ["product:{pk}"]\n'
    return parse_config(tomllib.loads(text), environ={})


def _record(event: str, number: int) -> dict[str, Any]:
    keys = {"pk": {"S": f"p-{number}"}, "sk": {"S": "v1"}}
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1704067200,
        "Keys": keys,
        "SequenceNumber": str(SEQ + number),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if event != "REMOVE":
        body["NewImage"] = {**keys, "n": {"N": str(number)}}
    return {
        "eventName": event,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": ARN,
        "dynamodb": body,
    }


def _batch(keys: int) -> list[dict[str, Any]]:
    """INSERTs, every tenth a REMOVE (a tombstone is a written key too)."""
    return [_record("REMOVE" if n % 10 == 9 else "INSERT", n) for n in range(keys)]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The document ids whose ``WrittenKey`` was built, in order."""
    ids: list[str] = []
    original = KeyWork.written_key

    def counting(work: KeyWork) -> WrittenKey | None:
        ids.append(work.change.document_id)
        return original(work)

    monkeypatch.setattr(KeyWork, "written_key", counting)
    return ids


def test_a_batch_builds_no_written_key_until_one_is_read(built: list[str]) -> None:
    """process_batch keeps its written keys unbuilt; sampling 1% builds only those sampled."""
    # given a batch of 300 keys written or tombstoned
    search = FakeSearch()
    search.create("catalog")
    outcome = process_batch(_batch(300), _config(), fake_sinks(search))
    # then none was built by the batch itself, though all 300 are there to sample
    assert built == []
    assert len(outcome.written) == 300
    # when the sampler picks at 1%
    chosen = choose_samples(outcome.written, 0.01, random.Random(7))
    # then only the chosen ones were built
    assert chosen
    assert built == [key.document_id for key in chosen]


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.3, 1.0])
def test_sampling_the_lazy_keys_picks_what_sampling_built_keys_picked(rate: float) -> None:
    """The same rng picks the same keys, with the same contents, as from a list of built keys."""
    # given a batch's written keys, and the same keys built into a list
    search = FakeSearch()
    search.create("catalog")
    outcome = process_batch(_batch(200), _config(), fake_sinks(search))
    every = list(outcome.written)
    # when both are sampled with the same seed
    lazy = choose_samples(outcome.written, rate, random.Random(11))
    eager = choose_samples(every, rate, random.Random(11))
    # then the samples are equal, tombstones (no document) and documents alike
    assert lazy == eager
    assert [key.document_id for key in every] == [f"p-{n}|v1" for n in range(200)]
    assert [key.document is None for key in every] == [n % 10 == 9 for n in range(200)]


def test_written_keys_slice_and_index_like_a_sequence() -> None:
    """Positions and slices read as a tuple of the built keys would."""
    # given a batch's written keys
    search = FakeSearch()
    search.create("catalog")
    outcome = process_batch(_batch(20), _config(), fake_sinks(search))
    every = tuple(outcome.written)
    # when read by position, from the end, and by slice, then they match the built tuple
    assert outcome.written[3] == every[3]
    assert outcome.written[-1] == every[-1]
    assert list(outcome.written[5:8]) == list(every[5:8])
    with pytest.raises(IndexError):
        outcome.written[20]
