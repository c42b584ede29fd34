"""Options a kind of reindex does not use are refused by name, never ignored (issue 24, item 4,
defect 8), without servers."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.commands.reindex.state import check_option_combination
from syncer.errors import ConfigError


@pytest.mark.parametrize(
    ("given", "mode", "refused"),
    [
        ({"--delete-old"}, {"workers": 2}, ["--delete-old"]),
        ({"--delete-grace-s", "--page-size", "--index"}, {"workers": 4}, ["--delete-grace-s"]),
        ({"--segments", "--index", "--page-size"}, {"export": True}, ["--segments"]),
        ({"--delete-old", "--workers"}, {"export": True, "workers": 2}, ["--delete-old"]),
        ({"--workers", "--export", "--index"}, {"abandon": True}, ["--export", "--workers"]),
    ],
)
def test_an_option_the_reindex_would_ignore_is_refused_by_name(
    given: set[str], mode: dict[str, Any], refused: list[str]
) -> None:
    """--workers, --export and --abandon each refuse the options they do not use (issue 24)."""
    arguments = {"abandon": False, "export": False, "workers": 1, **mode}
    with pytest.raises(ConfigError) as error:
        check_option_combination(given, **arguments)
    assert str(error.value).startswith(f"{', '.join(refused)} cannot be used with")


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        ({"--index", "--page-size", "--segments", "--workers"}, {"workers": 2}),
        ({"--index", "--page-size", "--workers"}, {"export": True, "workers": 2}),
        ({"--index"}, {"abandon": True}),
        ({"--delete-old", "--delete-grace-s", "--segments", "--page-size"}, {}),
    ],
)
def test_options_each_kind_of_reindex_uses_pass(given: set[str], mode: dict[str, Any]) -> None:
    """What a kind of reindex uses is accepted (the in-process scan uses every option)."""
    arguments = {"abandon": False, "export": False, "workers": 1, **mode}
    check_option_combination(given, **arguments)
