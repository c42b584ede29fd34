"""The public API docs/api.md declares holds: what the docs import exists, documented metrics are
emitted (and emitted metrics documented), and the Lambda handlers are where template.yaml says."""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"```python\n(.*?)```", re.S)
_FROM = re.compile(r"^\s*from (syncer[\w.]*) import \(?([\w, \n]+?)\)?\s*$", re.M)
_IMPORT = re.compile(r"^\s*import (syncer[\w.]*)\s*$", re.M)
# `syncer.x.y` or `syncer.x:y` in prose: a module, or a module's attribute
_DOTTED = re.compile(r"`(syncer(?:\.\w+)+(?::\w+)?)`")


def _documented_imports() -> list[tuple[str, str, str | None]]:
    """(page, module, name or None) for each import in a page's Python blocks."""
    found: list[tuple[str, str, str | None]] = []
    for page in PAGES:
        for block in _FENCE.findall(page.read_text()):
            for module, names in _FROM.findall(block):
                for name in re.split(r"[,\s]+", names.strip()):
                    if name:
                        found.append((page.name, module, name))
            found += [(page.name, module, None) for module in _IMPORT.findall(block)]
    return found


def _documented_paths() -> list[tuple[str, str]]:
    """`syncer.…` names in the pages' text, file names (syncer.toml) left out."""
    files = ("toml", "md", "json", "jsonl", "yaml", "txt", "zip", "log")
    return sorted(
        {
            (page.name, path)
            for page in PAGES
            for path in _DOTTED.findall(page.read_text())
            if path.rsplit(".", 1)[-1] not in files
        }
    )


def _resolve(path: str) -> Any:
    """A dotted path (or ``module:attribute``): the longest importable module, then attributes."""
    if ":" in path:
        module, attribute = path.split(":")
        return getattr(importlib.import_module(module), attribute)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(path)


@pytest.mark.parametrize(
    ("page", "module", "name"),
    _documented_imports(),
    ids=lambda value: str(value),
)
def test_every_name_the_docs_import_exists(page: str, module: str, name: str | None) -> None:
    """A Python example in README.md or docs/ imports only names that syncer has."""
    imported = importlib.import_module(module)
    if name is not None:
        deprecated = module == "syncer.cachefill"
        warned = pytest.warns(DeprecationWarning, match="syncer.client.cachefill")
        with warned if deprecated else contextlib.nullcontext():
            assert hasattr(imported, name), f"{page}: {module} has no {name}"


def test_the_docs_import_the_client_names() -> None:
    """The parser finds the imports it must check (a guard against a regex that finds none)."""
    names = {(module, name) for _, module, name in _documented_imports()}
    assert ("syncer.client.cachefill", "LeasedCache") in names
    assert ("syncer.freshness", "wait_until_visible") in names


@pytest.mark.parametrize(("page", "path"), _documented_paths(), ids=lambda value: str(value))
def test_every_syncer_path_the_docs_name_resolves(page: str, path: str) -> None:
    """`syncer.x.y` in the docs (handlers, transforms, modules) names something that exists."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # syncer.cachefill is named as such
        assert _resolve(path) is not None, f"{page}: {path}"


# --- metrics ---------------------------------------------------------------------------------

_METRIC_SECTIONS = [
    (ROOT / "docs" / "operations.md", "## Logs and metrics"),
    (ROOT / "docs" / "consistency.md", "## The figures"),
]


def _documented_metrics() -> tuple[set[str], set[str]]:
    """(EMF names, Prometheus names) in the metric tables of operations.md and consistency.md."""
    emf: set[str] = set()
    prometheus: set[str] = set()
    for page, heading in _METRIC_SECTIONS:
        text = page.read_text()
        section = text[text.index(heading) :]
        section = section[: section.find("\n## ", 1)]
        for row in (line for line in section.splitlines() if line.startswith("| ")):
            cells = row.split("|")[1:3]
            if cells[0].strip() in ("EMF metric", "EMF (namespace `syncer`)", "---"):
                continue
            emf |= {n for n in re.findall(r"`([A-Z]\w+)`", cells[0])}
            prometheus |= {n for n in re.findall(r"`(syncer_\w+)(?:\{\w+\})?`", cells[1])}
    return emf, prometheus


def _emitted_emf() -> set[str]:
    from syncer.consistency import report
    from syncer.core.outcome import BatchOutcome
    from syncer.obs.metrics import emf_document

    documents = [
        emf_document(BatchOutcome(0, 0, 0, 0, 0, 0, 0, ()), {"Service": "syncer"}, now_ms=1),
        *report.emf_documents({}, {"Service": "syncer"}, now_ms=1),
        report.schedule_emf_document({}, {"Service": "syncer"}, now_ms=1),
    ]
    return {
        metric["Name"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }


def _emitted_prometheus() -> set[str]:
    from syncer.consistency.report import ConsistencyMetrics
    from syncer.obs.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    ConsistencyMetrics(metrics.registry)
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in metrics.registry.collect()
    }


def test_every_documented_emf_metric_is_emitted_and_every_emitted_one_documented() -> None:
    """The EMF names in operations.md and consistency.md are exactly what syncer writes."""
    documented, _ = _documented_metrics()
    emitted = _emitted_emf()
    assert documented - emitted == set(), "documented, never emitted"
    assert emitted - documented == set(), "emitted, not documented"


def test_every_documented_prometheus_metric_is_exported_and_every_exported_one_documented() -> None:
    """The Prometheus names in the docs are exactly what `syncer run`'s /metrics serves."""
    _, documented = _documented_metrics()
    exported = _emitted_prometheus()
    assert documented - exported == set(), "documented, never exported"
    assert exported - documented == set(), "exported, not documented"


def test_the_lambda_handlers_template_yaml_names_exist() -> None:
    """Every Handler: in template.yaml is a callable syncer has (a public entry point)."""
    handlers = re.findall(r"Handler: (\S+)", (ROOT / "template.yaml").read_text())
    assert handlers
    for handler in handlers:
        assert callable(_resolve(handler)), handler


def test_the_api_page_lists_every_public_name_of_the_client_modules() -> None:
    """docs/api.md names each name of syncer.client.cachefill's and syncer.freshness's __all__."""
    import syncer.client.cachefill
    import syncer.client.freshness
    import syncer.freshness

    page = (ROOT / "docs" / "api.md").read_text()
    for module in (syncer.client.cachefill, syncer.client.freshness, syncer.freshness):
        missing = [name for name in module.__all__ if f"`{name}`" not in page]
        assert missing == [], f"{module.__name__}: {missing}"
    assert sys.modules["syncer.freshness"].__all__
