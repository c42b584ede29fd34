"""The pure part of consistency checks: sampling, messages, and the classification table."""

from __future__ import annotations

import random
from typing import Any

import pytest

from syncer.config import parse_config
from syncer.config.consistency import ConsistencyConfig, parse_consistency
from syncer.consistency.report import emf_documents, tally
from syncer.core.consistency import (
    CacheSeen,
    CheckKind,
    DocumentSeen,
    Observed,
    SampledWrite,
    WrittenKey,
    choose_samples,
    classify,
    percentile,
)
from syncer.core.versions import Version, change_version
from syncer.errors import ConfigError, PoisonRecordError

CHANGED_AT_S = 1_780_000_000.0
WRITTEN = change_version(200, None, CHANGED_AT_S)
OLDER = change_version(100, None, CHANGED_AT_S - 10)
NEWER = change_version(300, None, CHANGED_AT_S + 10)


def _sample(
    fingerprint: str | None = "f-written", cache_keys: tuple[str, ...] = ()
) -> SampledWrite:
    return SampledWrite(
        table="catalog",
        index="catalog",
        document_id="p1|v1",
        keys={"pk": {"S": "p1"}, "sk": {"S": "v1"}},
        version=WRITTEN,
        fingerprint=fingerprint,
        cache_keys=cache_keys,
        sampled_at_ms=int(CHANGED_AT_S * 1000) + 500,
    )


def _doc(version: Version = WRITTEN, fingerprint: str | None = "f-written") -> DocumentSeen:
    return DocumentSeen(version, fingerprint is None, fingerprint)


# (what syncer wrote, item now, document found) -> index verdict
INDEX_TABLE: list[tuple[str, str | None, str | None, DocumentSeen | None, CheckKind]] = [
    ("clean write", "f-written", "f-written", _doc(), CheckKind.OK),
    ("clean delete", None, None, _doc(fingerprint=None), CheckKind.OK),
    ("delete, no document at all", None, None, None, CheckKind.OK),
    ("document missing", "f-written", "f-written", None, CheckKind.INDEX_MISSING),
    (
        "tombstone over a live item",
        "f-written",
        "f-written",
        _doc(fingerprint=None),
        CheckKind.INDEX_MISSING,
    ),
    (
        "older version indexed",
        "f-written",
        "f-written",
        _doc(OLDER, "f-old"),
        CheckKind.INDEX_STALE,
    ),
    ("deleted item still shown", None, None, _doc(OLDER, "f-old"), CheckKind.INDEX_GHOST),
    (
        "edited behind syncer",
        "f-written",
        "f-written",
        _doc(WRITTEN, "f-edited"),
        CheckKind.CONTENT_DIFFERS,
    ),
    ("newer version indexed", "f-written", "f-newer", _doc(NEWER, "f-newer"), CheckKind.SUPERSEDED),
    ("newer tombstone", "f-written", None, _doc(NEWER, None), CheckKind.SUPERSEDED),
    ("item changed, not indexed yet", "f-written", "f-newer", _doc(), CheckKind.SUPERSEDED),
    ("deleted item re-created", None, "f-again", _doc(fingerprint=None), CheckKind.SUPERSEDED),
]


@pytest.mark.parametrize(
    ("written", "item", "document", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in INDEX_TABLE],
)
def test_index_verdicts(
    written: str | None, item: str | None, document: DocumentSeen | None, expected: CheckKind
) -> None:
    """Each combination of what syncer wrote, the item and the document gets its verdict."""
    result = classify(_sample(written), Observed(item, document))
    assert result.index is expected
    assert result.cache is CheckKind.OK


def test_a_value_loaded_before_the_change_is_cache_stale() -> None:
    """A cached value whose load began seconds before the change is stale; later ones are not."""
    before = int(CHANGED_AT_S * 1000) - 5000
    after = int(CHANGED_AT_S * 1000) + 5000
    cache = (CacheSeen("product:p1", before), CacheSeen("category:x", after))
    result = classify(
        _sample(cache_keys=("product:p1", "category:x")), Observed("f-written", _doc(), cache)
    )
    assert result.cache is CheckKind.CACHE_STALE
    assert result.stale_cache_keys == ("product:p1",)
    assert result.violations == (CheckKind.CACHE_STALE,)


def test_a_load_within_the_clock_uncertainty_is_not_called_stale() -> None:
    """A load begun in the change's own second cannot be ordered: no violation is claimed."""
    cache = (CacheSeen("product:p1", int(CHANGED_AT_S * 1000) + 200),)
    result = classify(_sample(), Observed("f-written", _doc(), cache))
    assert result.cache is CheckKind.OK


def test_an_undated_value_is_counted_but_not_judged() -> None:
    """A value written before envelopes has no fill time: not a violation, counted as undated."""
    result = classify(_sample(), Observed("f-written", _doc(), (CacheSeen("product:p1", None),)))
    assert result.violations == ()
    assert result.undated_cache_keys == 1


def test_a_check_can_find_an_index_and_a_cache_violation_at_once() -> None:
    """A missing document and a stale cache value are both reported."""
    cache = (CacheSeen("product:p1", int(CHANGED_AT_S * 1000) - 9000),)
    result = classify(_sample(), Observed("f-written", None, cache))
    assert result.violations == (CheckKind.INDEX_MISSING, CheckKind.CACHE_STALE)


def _written(n: int) -> list[WrittenKey]:
    return [
        WrittenKey("catalog", "catalog", f"p{i}", {"pk": {"S": f"p{i}"}}, WRITTEN, {}, ())
        for i in range(n)
    ]


def test_sampling_is_a_pure_function_of_its_rng() -> None:
    """The same seed picks the same keys; the share is about the rate."""
    keys = _written(10_000)
    first = choose_samples(keys, 0.01, random.Random(7))
    assert first == choose_samples(keys, 0.01, random.Random(7))
    assert 60 <= len(first) <= 140


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 50)])
def test_sampling_at_the_ends_takes_none_or_all(rate: float, expected: int) -> None:
    """Rate 0 samples nothing and rate 1 every written key, without drawing numbers."""
    assert len(choose_samples(_written(50), rate, random.Random())) == expected


def test_a_sample_survives_its_message() -> None:
    """to_message and from_message round-trip a sample, its version included."""
    sample = _sample(cache_keys=("product:p1",))
    assert SampledWrite.from_message(sample.to_message()) == sample


@pytest.mark.parametrize(
    "message",
    [
        "text",
        {"format": 99},
        {**_sample().to_message(), "id": 5},
        {**_sample().to_message(), "version": {}},
        {**_sample().to_message(), "cache_keys": "product:p1"},
        {**_sample().to_message(), "sampled_at_ms": True},
    ],
)
def test_a_malformed_message_is_refused_clearly(message: Any) -> None:
    """Anything that is not a sample's message raises PoisonRecordError, nothing else."""
    with pytest.raises(PoisonRecordError, match="consistency check message"):
        SampledWrite.from_message(message)


def test_percentiles_are_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; of nothing, 0."""
    values = [float(v) for v in range(100, 0, -1)]
    assert (percentile(values, 0.5), percentile(values, 0.99)) == (50.0, 99.0)
    assert percentile([], 0.99) == 0.0


def test_consistency_defaults_and_lambda_needs_a_queue() -> None:
    """Without [consistency], 1% is sampled after 5 s; Lambda samples only with a queue."""
    config = ConsistencyConfig()
    assert (config.sample_rate, config.check_after_s) == (0.01, 5.0)
    assert config.enabled(in_lambda=False)
    assert not config.enabled(in_lambda=True)
    environ = {"SYNCER_CONSISTENCY_QUEUE_URL": "https://sqs/q"}
    queued = parse_config({"tables": [{"name": "t", "index": "t"}]}, environ).consistency
    assert queued.queue_url == "https://sqs/q"
    assert queued.enabled(in_lambda=True)
    assert parse_consistency({"sample_rate": 0}).enabled(in_lambda=False) is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sample_rate": 1.5}, "sample_rate must be 0 to 1"),
        ({"sample_rate": float("nan")}, "finite number"),
        ({"check_after_s": 0}, "check_after_s must be more than 0"),
        ({"check_after_s": 901}, "DelaySeconds"),
        ({"queue_url": ""}, "queue_url"),
        ({"max_pending": 0}, "max_pending"),
        ({"rate": 0.1}, "unknown key consistency.rate"),
    ],
)
def test_bad_consistency_settings_are_refused(raw: dict[str, Any], message: str) -> None:
    """Each wrong setting of [consistency] is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        parse_config({"consistency": raw, "tables": [{"name": "t", "index": "t"}]}, {})


def test_emf_has_checks_and_a_violation_line_per_kind() -> None:
    """One line with ConsistencyChecks, then one per kind with its count, zeros included."""
    cache = (CacheSeen("product:p1", int(CHANGED_AT_S * 1000) - 9000),)
    results = [classify(_sample(), Observed("f-written", _doc(), cache))]
    documents = emf_documents(tally(results), {"Service": "syncer"}, now_ms=1)
    assert documents[0]["ConsistencyChecks"] == 1
    by_kind = {d["kind"]: d["ConsistencyViolations"] for d in documents[1:]}
    assert by_kind["cache_stale"] == 1
    assert by_kind["index_missing"] == 0
    # each kind also counts toward the total the alarm watches (Service alone)
    assert documents[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Service", "kind"],
        ["Service"],
    ]


def test_freshness_percentiles_reach_emf_and_prometheus() -> None:
    """A batch's freshness p50/p99 are EMF milliseconds and Prometheus seconds."""
    from syncer.core.outcome import BatchOutcome
    from syncer.obs.metrics import PrometheusMetrics, emf_document

    outcome = BatchOutcome(1, 1, 1, 0, 0, 0, 0, (), freshness_ms_p50=800.0, freshness_ms_p99=2500.0)
    document = emf_document(outcome, {"Service": "syncer"}, now_ms=1)
    assert (document["FreshnessP50"], document["FreshnessP99"]) == (800.0, 2500.0)
    metrics = PrometheusMetrics()
    metrics.observe(outcome)
    text = metrics.exposition().decode()
    assert "syncer_freshness_p99_seconds 2.5" in text
    assert "syncer_freshness_p50_seconds 0.8" in text


def test_the_in_process_checker_keeps_at_most_max_pending_and_counts_the_rest() -> None:
    """Samples beyond max_pending are dropped and counted; those not due at close are too."""
    from typing import cast

    from syncer.consistency.inprocess import InProcessChecker
    from syncer.sinks.ports import Sinks

    config = parse_config(
        {
            "consistency": {"sample_rate": 1.0, "check_after_s": 600, "max_pending": 2},
            "tables": [{"name": "t", "index": "t"}],
        },
        {},
    )
    checker = InProcessChecker(config, cast(Sinks, None))  # nothing comes due: no I/O
    try:
        checker.submit([_sample(), _sample(), _sample()])
        assert checker.pending() == 2
        assert checker.totals["dropped"] == 1
    finally:
        checker.close()
    assert checker.totals["dropped"] == 3
    assert checker.totals["checks"] == 0
