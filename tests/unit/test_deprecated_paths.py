"""Names that moved keep working for one minor release, with a warning naming the new path."""

from __future__ import annotations

import importlib
import warnings

import pytest

import syncer.client.cachefill as moved


def test_syncer_cachefill_imports_with_a_deprecation_warning_naming_the_new_path() -> None:
    """``from syncer.cachefill import LeasedCache`` (before 0.1.0) gives the same class, warned."""
    with pytest.warns(
        DeprecationWarning, match=r"import LeasedCache from syncer\.client\.cachefill"
    ):
        from syncer.cachefill import LeasedCache
    assert LeasedCache is moved.LeasedCache


@pytest.mark.parametrize("name", moved.__all__)
def test_every_name_of_the_new_module_is_served_by_the_old_path(name: str) -> None:
    """Each public name of syncer.client.cachefill is reachable through syncer.cachefill."""
    old = importlib.import_module("syncer.cachefill")
    with pytest.warns(DeprecationWarning, match="removed in 0.3.0"):
        assert getattr(old, name) is getattr(moved, name)


def test_a_name_the_new_module_lacks_is_an_attribute_error_without_a_warning() -> None:
    """A typo is an AttributeError, as for any module, not a deprecation."""
    old = importlib.import_module("syncer.cachefill")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            old.NoSuchName  # noqa: B018
