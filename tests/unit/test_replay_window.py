"""A replay's window: TIME parsed, refusals, where shards start and stop, and which streams a run reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from syncer.config import parse_config
from syncer.errors import ConfigError
from syncer.runner.sources import Sources, choose_sources
from syncer.runner.window import ReplayWindow, WindowCut, cut_read, parse_time

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T08:00:00Z", dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)),
        ("2026-12-01T09:30:00+01:00", dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)),
        ("2026-12-01T08:00:00.250Z", dt.datetime(2026, 12, 1, 8, 0, 0, 250_000, tzinfo=dt.UTC)),
        ("now", NOW),
        ("-90s", NOW - dt.timedelta(seconds=90)),
        ("-30m", NOW - dt.timedelta(minutes=30)),
        ("-2h", NOW - dt.timedelta(hours=2)),
        ("-7d", NOW - dt.timedelta(days=7)),
    ],
)
def test_a_time_is_iso_with_a_zone_now_or_relative(text: str, expected: dt.datetime) -> None:
    """Every accepted spelling of TIME gives the same instant in UTC."""
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-12-01T08:00:00", "has no zone; add one"),
        ("yesterday", "is not one of"),
        ("-2w", "is not one of"),
        ("+2h", "is not one of"),
        ("", "is not one of"),
    ],
)
def test_a_time_syncer_cannot_place_is_refused_saying_why(text: str, message: str) -> None:
    """A naive time (whose zone would be a guess) or an unknown spelling is a clear error."""
    with pytest.raises(ConfigError, match=message):
        parse_time(text, NOW)


def test_until_defaults_to_now() -> None:
    """Without --until the window ends when the command started."""
    window = ReplayWindow.parse("-1h", None, NOW)
    assert (window.start, window.until) == (NOW - dt.timedelta(hours=1), NOW)


@pytest.mark.parametrize(
    ("start", "until", "message"),
    [
        ("-1h", "-2h", "is after --until"),
        ("2026-12-07T13:00:00Z", "2026-12-07T14:00:00Z", "is in the future"),
    ],
)
def test_an_empty_or_future_window_is_refused(start: str, until: str, message: str) -> None:
    """from after until, or a from still to come, has nothing to replay."""
    with pytest.raises(ConfigError, match=message):
        ReplayWindow.parse(start, until, NOW)


def test_shards_start_a_clock_margin_before_from_and_stop_the_margin_after_until() -> None:
    """AT_TIMESTAMP is from less 1 s; a record is past the window after until plus the margin."""
    window = ReplayWindow.parse("-1h", "-10m", NOW, margin_s=60)
    assert window.start_s == (NOW - dt.timedelta(hours=1)).timestamp() - 1.0
    assert window.stop_after_s == (NOW - dt.timedelta(minutes=9)).timestamp()


def test_a_replay_keeps_its_own_checkpoint_key_per_window() -> None:
    """Two windows of one stream never share checkpoints, nor with the stream's follower."""
    arn = "arn:aws:kinesis:us-east-1:1:stream/s"
    first = ReplayWindow.parse("2026-12-01T08:00:00Z", "2026-12-01T09:00:00Z", NOW)
    second = ReplayWindow.parse("2026-12-01T08:00:00Z", "2026-12-01T10:00:00Z", NOW)
    assert first.checkpoint_key(arn) == f"{arn}#replay:2026-12-01T08:00:00Z..2026-12-01T09:00:00Z"
    assert len({arn, first.checkpoint_key(arn), second.checkpoint_key(arn)}) == 3
    assert "|" not in first.checkpoint_key(arn)  # the Redis store's field separator


UNTIL = NOW - dt.timedelta(hours=1)
WINDOW = ReplayWindow(NOW - dt.timedelta(hours=2), UNTIL, margin_s=60)
U = UNTIL.timestamp()


@pytest.mark.parametrize(
    ("arrivals", "behind", "now", "expected"),
    [
        ([U - 5, U, U + 60], 500, U + 3600, WindowCut(3, False)),  # within until + margin
        ([U - 5, U + 60.5, U + 61], 500, U + 3600, WindowCut(1, True)),  # past it: cut there
        ([U + 61], 500, U + 3600, WindowCut(0, True)),  # the first record is already past
        ([], 0, U + 1, WindowCut(0, True)),  # an empty read at the tip after until: done
        ([], 0, U - 1, WindowCut(0, False)),  # ... before until: changes may still come
        ([], 700, U + 1, WindowCut(0, False)),  # empty but behind: more records follow
        ([U - 5], 0, U + 1, WindowCut(1, False)),  # records: read once more to be sure
        ([], None, U + 1, WindowCut(0, False)),  # no MillisBehindLatest: not known caught up
    ],
)
def test_where_a_read_ends_the_replay_of_its_shard(
    arrivals: list[float], behind: int | None, now: float, expected: WindowCut
) -> None:
    """The records kept and whether the shard is done, for each kind of read."""
    assert cut_read(WINDOW, arrivals, behind, now) == expected


def _config(**tables: Any) -> Any:
    entries = [{"name": name, "index": name, **extra} for name, extra in tables.items()]
    return parse_config({"tables": entries}, environ={})


CONFIG = _config(
    plain={}, streamed={"kinesis_stream": "changes"}, also={"kinesis_stream": "changes"}
)


@pytest.mark.parametrize(
    ("tables", "kinesis", "expected"),
    [
        ((), (), Sources(("plain",), ("changes",))),
        (("plain",), (), Sources(("plain",), ())),
        (("streamed",), (), Sources((), ("changes",))),
        ((), ("other",), Sources((), ("other",))),
        (("plain",), ("other",), Sources(("plain",), ("other",))),
        (("streamed", "also"), ("changes",), Sources((), ("changes",))),
    ],
)
def test_each_table_is_read_through_its_kinesis_stream_or_its_dynamodb_stream(
    tables: tuple[str, ...], kinesis: tuple[str, ...], expected: Sources
) -> None:
    """kinesis_stream chooses Kinesis; --kinesis-stream alone reads only that; each stream once."""
    assert choose_sources(CONFIG, tables, kinesis) == expected


def test_a_replay_of_a_dynamodb_streams_table_is_refused() -> None:
    """DynamoDB Streams keeps 24 hours and has no AT_TIMESTAMP: the error says what to do."""
    with pytest.raises(ConfigError, match="table 'plain' is followed through its DynamoDB stream"):
        choose_sources(CONFIG, (), (), replay=True)
    assert choose_sources(CONFIG, ("streamed",), (), replay=True) == Sources((), ("changes",))


def test_an_unknown_table_is_refused_naming_the_configured_ones() -> None:
    """--table of a table not configured stops the run before anything is read."""
    with pytest.raises(ConfigError, match="'nope' is not configured; configured: plain"):
        choose_sources(CONFIG, ("nope",))


@pytest.mark.parametrize(
    "value",
    ["", "has space", "x" * 129, "arn:aws:sqs:us-east-1:1:stream/q", 5],
)
def test_a_bad_kinesis_stream_setting_is_refused(value: object) -> None:
    """kinesis_stream must be a stream name or a Kinesis stream ARN."""
    with pytest.raises(ConfigError, match=r"tables\[0\]\.kinesis_stream"):
        _config(t={"kinesis_stream": value})


def test_a_kinesis_stream_setting_may_be_a_name_or_an_arn() -> None:
    """Both forms are kept as written; the run resolves them with DescribeStreamSummary."""
    arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/catalog-changes"
    config = _config(a={"kinesis_stream": "catalog-changes"}, b={"kinesis_stream": arn})
    assert [t.kinesis_stream for t in config.tables] == ["catalog-changes", arn]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--until", "-1h"], "--until needs --from"),
        (["--until-margin-s", "5"], "--until-margin-s needs --from"),
        (["--from", "-1h", "--until", "-2h"], "is after --until"),
        (["--from", "2026-12-01T08:00:00"], "has no zone"),
        (["--from", "last week"], "is not one of"),
    ],
)
def test_syncer_run_refuses_a_replay_it_cannot_do_before_reading_anything(
    arguments: list[str], message: str, tmp_path: Any
) -> None:
    """Each mistake is one Error line naming it, before the configuration is even read."""
    from click.testing import CliRunner

    from syncer.cli import main

    missing = str(tmp_path / "absent.toml")  # never reached
    result = CliRunner().invoke(main, ["run", "--config", missing, *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "absent.toml" not in result.output


def test_a_replay_keeps_a_checkpoint_file_of_its_own_but_shares_a_redis_hash(
    tmp_path: Any,
) -> None:
    """A file is rewritten whole by its one process: a replay beside the worker gets its own
    file, one per window; a Redis hash is written field by field and is shared."""
    from syncer.runner.run import replay_store
    from syncer.sinks.checkpoints import FileCheckpointStore, RedisCheckpointStore

    follower = FileCheckpointStore(tmp_path / "cp.json")
    first = ReplayWindow.parse("-2h", "-1h", NOW)
    second = ReplayWindow.parse("-3h", "-1h", NOW)

    def path_of(window: ReplayWindow) -> Any:
        store = replay_store(follower, window)
        assert isinstance(store, FileCheckpointStore)
        return store.path

    assert path_of(first) != path_of(second)
    assert path_of(first) == path_of(first)  # run again, the same window resumes from it
    assert all(p.parent == tmp_path and p.name.startswith("cp.replay-") for p in (path_of(first),))
    redis_store = RedisCheckpointStore(None, "syncer:checkpoints")
    assert replay_store(redis_store, first) is redis_store
