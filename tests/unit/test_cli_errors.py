"""Every command's SyncerError reaches the user as one redacted ``Error:`` line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from syncer import cli
from syncer.errors import ConfigError, DownstreamUnavailableError, SyncerError

SECRET = "hunter2-very-secret"
LEAKY = f"cannot reach https://admin:{SECRET}@search.example.com:9200/_bulk"


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise DownstreamUnavailableError(LEAKY)


def _stub_sinks(config: Any) -> Any:
    describe = {"Table": {"ItemCount": 3}}
    return SimpleNamespace(
        dynamodb=SimpleNamespace(describe_table=lambda **_: describe),
        items=SimpleNamespace(describe=lambda table: describe["Table"]),
    )


def _patch_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.sinks.build.opensearch_client", lambda config: object())
    monkeypatch.setattr("syncer.sinks.indices.plan_setup", _raise)


def _patch_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.demo.run_demo", _raise)


def _patch_reindex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.cli.rebuild.command_sinks", _stub_sinks)
    monkeypatch.setattr("syncer.commands.reindex.reindex_table", _raise)


def _patch_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.cli.verify.command_sinks", _stub_sinks)
    monkeypatch.setattr("syncer.commands.verify.verify_table", _raise)


def _patch_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("syncer.runner.run.run_poller", _raise)


def _patch_config(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_config(path: str | None) -> Any:
        raise ConfigError(f"redis.url {LEAKY} is not usable")

    monkeypatch.setattr("syncer.cli.app.load_config", bad_config)


COMMANDS = {
    "setup": (["setup"], _patch_setup),
    "demo": (["demo"], _patch_demo),
    "reindex": (["reindex", "--table", "catalog"], _patch_reindex),
    "verify": (["verify", "--table", "catalog"], _patch_verify),
    "run": (["run", "--metrics-port", "0"], _patch_run),
    "config": (["deadletter", "list"], _patch_config),
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "syncer.toml"
    path.write_text(
        f'[deadletter]\nfile = "{tmp_path / "dl.jsonl"}"\n\n'
        '[[tables]]\nname = "catalog"\nindex = "catalog"\n'
    )
    return path


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_secret_in_a_commands_error_is_redacted(
    name: str, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever command raises it, a SyncerError is one Error: line with the password masked."""
    # given a command whose work raises a SyncerError that quotes a URL with a password
    args, patch = COMMANDS[name]
    patch(monkeypatch)
    # when the command runs
    result = CliRunner().invoke(cli.main, [*args, "--config", str(config_file)])
    # then it exits 1 with one Error: line, the password replaced by ***
    assert result.exit_code == 1, result.output
    assert SECRET not in result.output
    assert "Error: " in result.output
    assert "https://admin:***@search.example.com" in result.output
    assert not isinstance(result.exception, SyncerError)  # handled, not a traceback


@pytest.mark.parametrize("sample", ["0", "-5", "20000"])
def test_verify_refuses_a_sample_it_cannot_take(
    sample: str, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify --sample` outside 1..10,000 is a usage error naming the range, before any request.

    On the old code 0 and -5 reached DynamoDB's Scan (a botocore error) and 20000 OpenSearch's
    search (over its result window).
    """
    # given sinks that fail any request
    monkeypatch.setattr("syncer.cli.verify.command_sinks", lambda config: SimpleNamespace())
    # when verify is asked for such a sample
    args = ["verify", "--table", "catalog", "--sample", sample, "--config", str(config_file)]
    result = CliRunner().invoke(cli.main, args)
    # then it is refused with the range
    assert result.exit_code == 2, result.output
    assert "--sample" in result.output
    assert "1<=x<=10000" in result.output


@pytest.mark.parametrize("sample", [0, -5, 20_000])
def test_verify_table_refuses_a_sample_it_cannot_take(sample: int) -> None:
    """verify_table, called as a library, refuses such a sample with a ConfigError first."""
    from syncer.commands.verify import verify_table
    from syncer.config import Config, TableConfig

    config = Config(tables=(TableConfig("catalog", "catalog"),))
    with pytest.raises(ConfigError, match="--sample must be between 1 and 10,000"):
        verify_table(config, SimpleNamespace(), "catalog", sample=sample)  # type: ignore[arg-type]
