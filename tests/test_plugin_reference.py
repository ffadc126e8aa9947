"""docs/plugin-reference.md documents every public method and field a plugin author meets: a
new method or field on these classes fails this test until its section mentions it."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import hrsbench
from hrsbench.plugin import dataset as data
from hrsbench.plugin import gradient, hookspecs, models, threat

DOC = (Path(__file__).resolve().parents[1] / "docs" / "plugin-reference.md").read_text()

#: Section heading (### `Name`) → the class it documents.
CLASSES = {
    "Defense": hrsbench.Defense,
    "Trainer": hrsbench.Trainer,
    "ModelCache": hrsbench.ModelCache,
    "Arch": hrsbench.Arch,
    "Attack": hrsbench.Attack,
    "GradientAttack": hrsbench.GradientAttack,
    "Optimizer": gradient.Optimizer,
    "Adam": hrsbench.Adam,
    "Classifier": hrsbench.Classifier,
    "Threat": hrsbench.Threat,
    "ThreatContext": threat.ThreatContext,
    "Dataset": hrsbench.Dataset,
    "DataFile": data.DataFile,
    "Download": data.Download,
}
HELPERS = [models.base_stages, models.base_model, models.insert_stages, models.replace_stage,
           models.split_stages, models.without, models.seeded_init, gradient.margin_loss,
           gradient.dlr_loss, gradient.uniform_start, gradient.bounds_of, threat.frozen]


def section(title: str) -> str:
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^##)", DOC + "\n##", re.M | re.S)
    assert match, f"docs/plugin-reference.md has no section ### `{title}`"
    return match.group(1)


def members(cls: type) -> set[str]:
    """Public names the class itself defines: methods, properties, class attributes (annotated
    ones included) and dataclass fields."""
    names = {n for n in vars(cls) if not n.startswith("_")}
    names |= {n for n in vars(cls).get("__annotations__", {}) if not n.startswith("_")}
    if dataclasses.is_dataclass(cls):
        names |= {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    return names


def mentioned(name: str, text: str) -> bool:
    return re.search(rf"`{re.escape(name)}[`(,]", text) is not None


@pytest.mark.parametrize("title", CLASSES)
def test_every_public_member_is_documented_in_its_section(title):
    text = section(title)
    missing = sorted(n for n in members(CLASSES[title]) if not mentioned(n, text))
    assert not missing, f"document in ### `{title}`: {', '.join(missing)}"


def test_every_hook_is_documented():
    hooks = [n for n, f in vars(hookspecs).items()
             if inspect.isfunction(f) and n.startswith("register_")]
    assert len(hooks) == 5
    text = section("hookspecs")
    assert all(mentioned(h, text) for h in hooks), hooks


def test_every_helper_is_documented():
    missing = [f.__name__ for f in HELPERS if not mentioned(f.__name__, DOC)
               and not mentioned(f"{f.__module__}.{f.__name__}", DOC)]
    assert not missing


def test_the_check_catches_an_undocumented_method():
    class Extra(hrsbench.Defense):
        def calibrate(self) -> None: ...

    assert "calibrate" in members(Extra)
    assert not mentioned("calibrate", section("Defense"))
