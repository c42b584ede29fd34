"""`syncer reindex` checks its arguments before it creates anything (issue 19, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import main
from syncer.sinks.search import reindex_alias
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _item(pk: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": pk}, "sk": {"S": "v1"}, "category": {"S": "shoes"}, "price": {"N": "1"}}


def _reindex(stack: Stack, state: Path, *extra: str) -> tuple[int, str]:
    args = ["reindex", "--config", str(stack.config_path), "--table", stack.table]
    result = CliRunner().invoke(main, [*args, "--state-file", str(state), *extra])
    return result.exit_code, result.output


def _created(stack: Stack) -> tuple[bool, bool]:
    client = stack.sinks.opensearch
    new_index = client.indices.exists(index=f"{stack.index}-000002")
    running = client.indices.exists_alias(name=reindex_alias(stack.index))
    return bool(new_index), bool(running)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--segments", "0"), ("--segments", "-3"), ("--page-size", "0"), ("--delete-grace-s", "-1")],
)
def test_bad_arguments_are_refused_before_anything_is_created(
    stack: Stack, tmp_path: Path, option: str, value: str
) -> None:
    """A bad --segments or --page-size stops the command before the new index or alias exist."""
    # given a table with an item
    stack.put(_item("a"))
    stack.deliver()
    # when reindex runs with a bad argument
    code, output = _reindex(stack, tmp_path / "s.json", option, value)
    # then it fails with the argument named, and nothing was created or saved
    assert code != 0
    assert option.lstrip("-").replace("-", " ").split()[0] in output.lower()
    assert _created(stack) == (False, False)
    assert not (tmp_path / "s.json").exists()


def _broken_by_an_earlier_release(stack: Stack, state: Path) -> None:
    """What `reindex --segments 0` left before arguments were checked: index, alias, state."""
    client = stack.sinks.opensearch
    (old_index,) = client.indices.get_alias(name=stack.index)
    new_index = f"{stack.index}-000002"
    client.indices.create(index=new_index, body={"aliases": {reindex_alias(stack.index): {}}})
    saved = {
        "table": stack.table,
        "new_index": new_index,
        "old_index": old_index,
        "segments": 0,
        "last_keys": {},
        "done_segments": [],
        "indexed": 0,
        "rejected": 0,
        "started_at": 1.0,
        "tombstones_carried": None,
    }
    state.write_text(json.dumps(saved))


def test_a_reindex_an_earlier_release_left_is_refused_until_abandoned(
    stack: Stack, tmp_path: Path
) -> None:
    """A reindex alias no job names (left by a release before jobs, with segments=0) is
    refused, naming --abandon; abandoned, a new reindex runs and swaps."""
    # given items, and a reindex an earlier release left with segments=0
    for number in range(5):
        stack.put(_item(f"b{number}"))
    stack.deliver()
    state = tmp_path / "s.json"
    _broken_by_an_earlier_release(stack, state)
    # when it is run again with a valid --segments
    code, output = _reindex(stack, state, "--segments", "2")
    # then it is refused, and nothing changed
    assert code == 1, output
    assert "--abandon" in output
    # and once abandoned, a new reindex swaps
    assert _reindex(stack, state, "--abandon")[0] == 0
    code, output = _reindex(stack, state, "--segments", "2")
    assert code == 0, output
    assert f"alias {stack.index} -> {stack.index}-000002" in output
    assert stack.indexed() == stack.scanned()


def test_a_broken_reindex_can_be_abandoned(stack: Stack, tmp_path: Path) -> None:
    """`reindex --abandon` drops the half-built index and its alias, and lifts
    the write block a swap that crashed before moving the alias left on the serving index.
    """
    # given items, a reindex an earlier release left with segments=0, and a write block on the
    # index the alias serves (as a crash between the block and the alias swap leaves it)
    stack.put(_item("c"))
    stack.deliver()
    state = tmp_path / "s.json"
    _broken_by_an_earlier_release(stack, state)
    (old_index,) = stack.sinks.opensearch.indices.get_alias(name=stack.index)
    stack.sinks.opensearch.indices.put_settings(index=old_index, body={"index.blocks.write": True})
    # when it is abandoned
    code, output = _reindex(stack, state, "--abandon")
    # then the stream writes to one index again, and the alias still serves the old one
    assert code == 0, output
    assert "abandoned" in output
    assert _created(stack) == (False, False)
    assert sorted(stack.sinks.opensearch.indices.get_alias(name=stack.index)) == [old_index]
    assert f"lifted the write block of {old_index}" in output
    # and the stream writes there again
    stack.put(_item("d"))
    stack.deliver()
    assert stack.failed_invocations == 0
    assert stack.indexed() == stack.scanned()
