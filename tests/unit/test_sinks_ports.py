"""``Sinks`` holds its ports built once: every access gives the same adapter."""

from __future__ import annotations

from syncer.commands.jobs import job_store
from syncer.sinks.jobs import JobStore
from syncer.sinks.search.admin import OpenSearchAdmin
from tests.fakes import unconnected_sinks


def test_the_admin_port_and_the_job_store_are_built_once() -> None:
    """``admin`` and ``job_store(sinks)`` give the same adapter on every access, so the jobs
    index is checked once per sinks rather than once per job step."""
    sinks = unconnected_sinks()
    assert isinstance(sinks.admin, OpenSearchAdmin)
    assert sinks.admin is sinks.admin
    assert isinstance(job_store(sinks), JobStore)
    assert job_store(sinks) is job_store(sinks)


def test_replaced_sinks_get_their_own_ports() -> None:
    """``replace`` builds new adapters around the new client; the old sinks keep theirs."""
    sinks = unconnected_sinks()
    other = sinks.replace(opensearch=unconnected_sinks().clients.opensearch)
    assert other.admin is not sinks.admin
    assert other.jobs is not sinks.jobs
    assert other.search is not sinks.search
