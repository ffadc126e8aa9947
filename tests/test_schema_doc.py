"""docs/results-schema.md documents every field of ResultLine's sections, and nothing else."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from hrsbench.results.record import SECTIONS, Kind, ResultLine
from hrsbench.results.vocabulary import Setting

DOC = Path(__file__).resolve().parent.parent / "docs" / "results-schema.md"


def documented() -> dict[str, list[str]]:
    """Per ``## `section` `` heading, the first-column names of its table."""
    out: dict[str, list[str]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            section = heading.group(1)
            out[section] = []
        elif line.startswith("## "):
            section = None
        elif section and (cell := re.match(r"^\| `(\w+)` \|", line)):
            out[section].append(cell.group(1))
    return out


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_field_of_a_section_is_documented(section):
    assert documented()[section] == [f.name for f in fields(SECTIONS[section])]


def test_every_section_and_the_version_are_documented():
    top = [f.name for f in fields(ResultLine)]
    assert sorted(documented()) == sorted(top)
    assert documented()["schema_version"] == ["schema_version"]


def test_enum_values_are_listed():
    text = DOC.read_text(encoding="utf-8")
    kinds = ", ".join(f"`{k.value}`" for k in Kind)
    settings = ", ".join(f"`{s.value}`" for s in Setting)
    assert f"| `kind` | {kinds} |" in text
    assert f"| `setting` | {settings} |" in text
