"""``OpenSearchAdmin``: the index and alias calls the commands make (``SearchAdmin``, the port
in ``syncer.sinks.ports``), typed, each through OpenSearch's guard; the raw client stays here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncer.sinks.search.reads import Hit

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from syncer.sinks.resilience import Downstream

WRITE_BLOCK = "index.blocks.write"


class OpenSearchAdmin:
    """``SearchAdmin`` on OpenSearch: every call through the guard's retry and breaker."""

    __slots__ = ("_client", "_guard")

    def __init__(self, client: OpenSearch, guard: Downstream) -> None:
        self._client = client
        self._guard = guard

    def _call(self, method: Any, **kwargs: Any) -> Any:
        return self._guard.call_with_retry(method, **kwargs)

    def indices_of(self, alias: str) -> list[str]:
        """The concrete indices behind ``alias``; none when it does not exist."""
        found = self._call(self._client.indices.get_alias, name=alias, ignore=404)
        return sorted(name for name in found if isinstance(found.get(name), dict))

    def aliases_of(self, index: str) -> list[str]:
        """The aliases on ``index``; none when it does not exist."""
        found = self._call(self._client.indices.get_alias, index=index, ignore=404)
        entry = found.get(index)
        return sorted(entry.get("aliases", {})) if isinstance(entry, dict) else []

    def indices_matching(self, pattern: str) -> list[str]:
        """The concrete indices whose names match ``pattern`` (a wildcard), none if nothing."""
        found = self._call(
            self._client.indices.get, index=pattern, params={"ignore_unavailable": "true"}
        )
        return sorted(found)

    def index_exists(self, index: str) -> bool:
        return bool(self._call(self._client.indices.exists, index=index))

    def create_index(self, index: str, body: Mapping[str, Any] | None = None) -> bool:
        """Create ``index`` (settings from its template); False when it exists already."""
        from opensearchpy.exceptions import RequestError

        try:
            self._call(self._client.indices.create, index=index, body=dict(body or {}))
        except RequestError as error:
            if getattr(error, "error", "") != "resource_already_exists_exception":
                raise
            return False
        return True

    def put_alias(self, index: str, alias: str) -> None:
        self._call(self._client.indices.put_alias, index=index, name=alias)

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        """Every action in one ``POST _aliases`` (atomic)."""
        self._call(self._client.indices.update_aliases, body={"actions": list(actions)})

    def delete_index(self, index: str) -> None:
        """Delete ``index``; nothing when it does not exist."""
        self._call(self._client.indices.delete, index=index, params={"ignore_unavailable": "true"})

    def index_settings(self, index: str, name: str | None = None) -> dict[str, Any]:
        settings: dict[str, Any] = self._call(
            self._client.indices.get_settings, index=index, name=name
        )
        return settings

    def put_index_settings(self, index: str, body: Mapping[str, Any]) -> None:
        self._call(self._client.indices.put_settings, index=index, body=body)

    def write_blocked(self, index: str) -> bool:
        """Whether writes to ``index`` are blocked (``index.blocks.write``)."""
        settings = self.index_settings(index, WRITE_BLOCK)
        block = settings.get(index, {}).get("settings", {}).get("index", {}).get("blocks", {})
        return str(block.get("write", "false")).lower() == "true"

    def set_write_block(self, index: str, blocked: bool) -> None:
        """Block writes to ``index``, or lift the block (the setting removed)."""
        self.put_index_settings(index, {WRITE_BLOCK: True if blocked else None})

    def primary_shards(self, index: str) -> int:
        settings = self.index_settings(index)
        return max(1, int(next(iter(settings.values()))["settings"]["index"]["number_of_shards"]))

    def documents(self, index: str, ids: Sequence[str], *, source: bool = True) -> dict[str, Hit]:
        """The documents of ``ids`` that ``index`` holds (a realtime ``_mget``), by id, each
        with ``_seq_no`` and ``_primary_term``, and ``_source`` unless ``source`` is False."""
        if not ids:
            return {}
        response = self._call(
            self._client.mget,
            index=index,
            body={"ids": list(ids)},
            params={"_source": "true" if source else "false", "realtime": "true"},
        )
        return {doc["_id"]: doc for doc in response["docs"] if doc.get("found")}
