"""The README and docs/ link only to files of the repository, and to headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for line in page.read_text().splitlines():
        heading = re.match(r"^#{1,6} (.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_somewhere_in_the_repository(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
        assert resolved.exists(), f"{page.name} links to a missing file: {target}"
        if anchor:
            assert anchor in anchors(resolved), f"{page.name}: no heading for #{anchor} in {resolved.name}"


RELATIVE_PATH = re.compile(r"(?<![\w/.])((?:\.\./)+[\w.\-/]*)")


def test_no_path_in_the_text_leads_outside_the_repository():
    """Besides links (checked above): a relative path written anywhere in a page (a command, a code
    block) must stay inside the repository, which is all a reader has, whether it is read from the
    page's folder or from the repository's root (where commands run)."""
    for page in PAGES:
        text = LINK.sub("]", page.read_text())
        for path in RELATIVE_PATH.findall(text):
            for base in (page.parent, REPO):
                assert (base / path).resolve().is_relative_to(REPO), f"{page.name} points outside: {path}"


def test_the_readme_stays_short_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 120
    first_block = readme.split("```")[1]
    assert "bash scripts/run.sh" in first_block and "bash scripts/test.sh" in first_block
