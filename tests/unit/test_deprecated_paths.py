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


def test_sinks_search_admin_still_reaches_opensearch_with_a_warning_naming_admin() -> None:
    """``Sinks.search_admin`` (the raw client behind its guard) works, warned: use ``admin``."""
    from syncer.sinks.resilience import Guarded
    from tests.fakes import unconnected_sinks

    sinks = unconnected_sinks()
    with pytest.warns(DeprecationWarning, match=r"use Sinks\.admin"):
        proxy = sinks.search_admin
    assert isinstance(proxy, Guarded)
    assert proxy._target is sinks.clients.opensearch


def test_swap_alias_given_a_raw_client_wraps_it_with_a_warning() -> None:
    """``block_writes(client, ...)`` (before 0.2) still blocks, through the admin port, warned."""
    from syncer.commands.reindex import block_writes

    class Indices:
        def __init__(self) -> None:
            self.settings: list[tuple[str, object]] = []

        def put_settings(self, index: str, body: object) -> None:
            self.settings.append((index, body))

    class Client:
        indices = Indices()

    with pytest.warns(DeprecationWarning, match=r"pass the admin port \(Sinks\.admin\)"):
        block_writes(Client(), "catalog-000001")
    assert Client.indices.settings == [("catalog-000001", {"index.blocks.write": True})]
