"""Index templates and the versioned index behind each table's alias (``syncer setup``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncer.config import TableConfig
from syncer.core import jsoncodec
from syncer.core.documents import SYNCER_FIELD
from syncer.errors import ConfigError

DEFAULT_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "index_templates"
FIRST_GENERATION = 1

# Search through the alias never sees tombstones (docs/ordering.md).
LIVE_DOCUMENTS_FILTER = {"bool": {"must_not": [{"term": {f"{SYNCER_FIELD}.deleted": True}}]}}


def versioned_index_name(alias: str, generation: int) -> str:
    return f"{alias}-{generation:06d}"


def template_name(table: TableConfig) -> str:
    return f"syncer-{table.index}"


def load_template(
    table: TableConfig, templates_dir: Path = DEFAULT_TEMPLATES_DIR
) -> dict[str, Any]:
    """The composable index template body for ``table``: its own file or ``default.json``."""
    path = templates_dir / f"{table.index}.json"
    if not path.exists():
        path = templates_dir / "default.json"
    try:
        body: dict[str, Any] = jsoncodec.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigError(f"index template {path} cannot be read: {error}") from None
    body = {k: v for k, v in body.items() if not k.startswith("_comment")}
    # Versioned indices are {alias}-NNNNNN. Aliases that prefix one another ("catalog" and
    # "catalog-0x") would match the same indices at one priority, which OpenSearch refuses, so
    # the longer (more specific) alias gets the higher priority.
    body["index_patterns"] = [f"{table.index}-0*"]
    body["priority"] = int(body.get("priority", 100)) + len(table.index)
    body["_meta"] = {"syncer_template_sha256": _fingerprint(body)}
    return body


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One change `syncer setup` makes (or would make, with --dry-run)."""

    table: str
    action: str
    target: str


def plan_setup(
    client: Any, table: TableConfig, templates_dir: Path = DEFAULT_TEMPLATES_DIR
) -> list[SetupStep]:
    """What is missing for ``table``: the template differs or is absent, the alias is absent."""
    steps: list[SetupStep] = []
    wanted = load_template(table, templates_dir)["_meta"]["syncer_template_sha256"]
    name = template_name(table)
    if _existing_template(client, name) != wanted:
        steps.append(SetupStep(table.name, "put index template", name))
    if not client.indices.exists_alias(name=table.index):
        if client.indices.exists(index=table.index):
            raise ConfigError(
                f"{table.index!r} is a concrete index, not an alias; syncer writes through an alias "
                f"(reindex it into {versioned_index_name(table.index, FIRST_GENERATION)} first)"
            )
        steps.append(
            SetupStep(
                table.name,
                "create index with alias",
                versioned_index_name(table.index, FIRST_GENERATION),
            )
        )
    return steps


def _existing_template(client: Any, name: str) -> str | None:
    """The template fingerprint stored in the template's ``_meta``, or None when absent."""
    from opensearchpy.exceptions import NotFoundError

    try:
        response = client.indices.get_index_template(name=name)
    except NotFoundError:
        return None
    templates = response.get("index_templates", [])
    if not templates:
        return None
    meta = templates[0]["index_template"].get("_meta") or {}
    return str(meta.get("syncer_template_sha256", ""))


def _fingerprint(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(jsoncodec.dumps(template)).hexdigest()


def apply_setup(
    client: Any,
    table: TableConfig,
    steps: list[SetupStep],
    templates_dir: Path = DEFAULT_TEMPLATES_DIR,
) -> None:
    """Carry out ``steps`` (from ``plan_setup``); safe to run again."""
    for step in steps:
        if step.action == "put index template":
            client.indices.put_index_template(
                name=step.target, body=load_template(table, templates_dir)
            )
        elif step.action == "create index with alias":
            create_versioned_index(client, table, step.target, with_alias=True)


def create_versioned_index(client: Any, table: TableConfig, index: str, with_alias: bool) -> None:
    """Create ``index`` (settings from the template); optionally put the table's alias on it."""
    from opensearchpy.exceptions import RequestError

    body: dict[str, Any] = {}
    if with_alias:
        body["aliases"] = {table.index: {"is_write_index": True, "filter": LIVE_DOCUMENTS_FILTER}}
    try:
        client.indices.create(index=index, body=body)
    except RequestError as error:
        if getattr(error, "error", "") != "resource_already_exists_exception":
            raise
        if with_alias:
            client.indices.put_alias(
                index=index, name=table.index, body=body["aliases"][table.index]
            )
