"""Every measured number a reader sees in README.md and docs/ comes from a benchmark's JSON (or
a card), rendered between ``<!-- NAME:start -->`` / ``<!-- NAME:end -->`` markers by
``benchmarks/readme_tables.py``; prose says what the rendered rows show. A decimal or a
percentage typed into prose is a measurement that will drift from its JSON, unless it is one of
the settings and definitions below (a threshold's false-accept rate, gallery shares, a
default's value)."""

from __future__ import annotations

import re

from .conftest import REPO

SETTINGS = {  # numbers that define or configure, never measure
    "0.1%", "1%", "10%", "30%", "60%", "70%", "80%", "90%", "100%",  # rates and shares a rule is set to
    "0.05", "0.3", "0.5", "0.75", "1.2", "3.5", "0.47", "0.9999", "1.44",  # defaults, sizes, a tested bound
    "2.0", "3.0", "4.0", "10.2", "10.9", "127.0.0.1",  # licence versions, file sizes in MB, an address
}  # fmt: skip
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def typed_numbers(text: str) -> set[str]:
    """Decimals and percentages outside rendered blocks, code blocks and inline code."""
    text = re.sub(r"<!-- (\S+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return {n for n in re.findall(r"(?<![\w.])\d+(?:[.,]\d+)*(?:\s?%)?", text) if "." in n or "%" in n}


def test_a_typed_measurement_is_caught():
    assert typed_numbers("the default scores 78.9 / 76.4 on cuhk03 (see 12% below)") == {
        "78.9",
        "76.4",
        "12%",
    }
    assert typed_numbers("<!-- t:start -->\n78.9\n<!-- t:end -->\n`0.61` and\n```\n5.5\n```") == set()


def test_docs_type_no_measurement_outside_rendered_blocks():
    found = {page.name: typed_numbers(page.read_text()) - SETTINGS for page in PAGES}
    assert not {page: sorted(numbers) for page, numbers in found.items() if numbers}
