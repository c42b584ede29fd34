"""The README and docs/ stay true to the tree: links resolve, commands and examples are real."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from syncer.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_EXTERNAL = ("http://", "https://", "mailto:")
# .ci/run takes the test command from README.md with this sed expression.
_CI_TEST_LINE = re.compile(r"^(make test)[ \t]*#.*$")


def _prose(text: str) -> str:
    """The text without fenced code blocks, whose brackets are not links or headings."""
    return _FENCE.sub("", text)


def _relative_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_CODE_SPAN.sub("", _prose(page.read_text())))
        if not target.startswith(_EXTERNAL)
    ]


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings (lower case, punctuation gone, dashes)."""
    anchors: set[str] = set()
    for heading in _HEADING.findall(_prose(page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page: Path) -> None:
    """Each relative link of the page names a file that exists, and a heading of it if anchored."""
    # given the page's relative links
    broken = []
    for target in _relative_links(page):
        path_part, _, anchor = target.partition("#")
        # when each is resolved against the page's folder (a bare anchor: the page itself)
        linked = (page.parent / path_part).resolve() if path_part else page
        # then the file exists, and an anchor names one of its headings
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert broken == []


def test_readme_links_every_docs_page() -> None:
    """The README's documentation list reaches every page in docs/."""
    # given the files README.md links to
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _relative_links(ROOT / "README.md")}
    # then every docs/ page is among them
    assert sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.resolve() not in linked) == []


def test_readme_starts_with_the_two_commands() -> None:
    """README.md's first code block, before any section, is `make demo` then `make test`."""
    # given the README
    text = (ROOT / "README.md").read_text()
    first_block = _FENCE.search(text)
    assert first_block is not None
    # when its first code block is read
    lines = first_block.group(0).splitlines()[1:-1]
    # then nothing but the title and prose comes before it
    assert not re.search(r"^##", text[: first_block.start()], re.MULTILINE)
    # and it holds exactly the two commands, each with its comment
    assert [line.split("#")[0].strip() for line in lines] == ["make demo", "make test"]
    assert all("#" in line for line in lines)
    # and .ci/run's sed expression finds the test command on its line
    assert [m.group(1) for line in lines if (m := _CI_TEST_LINE.match(line))] == ["make test"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_toml_examples_are_valid_configurations(page: Path) -> None:
    """Every TOML example in the README and docs/ passes the configuration's validation."""
    # given the page's TOML code blocks
    blocks = re.findall(r"^```toml\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)
    for block in blocks:
        # when one is parsed without environment overrides
        config = parse_config(tomllib.loads(block), environ={})
        # then it is a configuration with at least one table
        assert config.tables


def test_architecture_lists_every_module_once() -> None:
    """ARCHITECTURE.md's module table names each module of syncer/ exactly once, and no other."""
    # given the modules in the package and the rows of the table
    package = ROOT / "syncer"
    modules = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if p != package / "__init__.py"
        and (
            p.name != "__init__.py" or len(ast.parse(p.read_text()).body) > 1
        )  # more than a docstring
    )
    rows = [
        line.split("|")[1]
        for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines()
        if line.startswith("| `")
    ]
    named = sorted(name for row in rows for name in re.findall(r"`([\w/]+\.py)`", row))
    # then each module is named once and nothing else is
    assert named == modules
