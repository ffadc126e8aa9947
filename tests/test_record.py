"""ResultLine: one validated, versioned record; the v1 → v2 migration of the published lines."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from hrsbench.errors import HrsbenchError
from hrsbench.results.migrate import migrate
from hrsbench.results.record import (
    SCHEMA_VERSION,
    Evaluation,
    Kind,
    Metrics,
    ModelSpec,
    Provenance,
    ResultLine,
    ThreatSpec,
    Traits,
    cell_key,
    check_metric_names,
)
from hrsbench.results.vocabulary import Setting

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = [ROOT / "leaderboards/mnist-paper/results.jsonl",
             ROOT / "leaderboards/cifar10-paper-cpu/results.jsonl",
             ROOT / "docs/quick/results.jsonl"]
#: A quick run's lines as schema 1 wrote them (no schema_version, no per-example counts).
SCHEMA_1 = ROOT / "tests/data/quick-schema-1.jsonl"


def make_line(**metrics: object) -> ResultLine:
    model = ModelSpec("mnist", "hrs", {"channels": [10, 10]}, 0, None, 5, "hrsbench", "0.1.0")
    threat = ThreatSpec(Kind.EVASION, "pgd", {"max_iter": 10}, 0.25, Setting.EOT, True,
                        "hrsbench", "0.1.0")
    evaluation = Evaluation(10, 90, None, 10000, 5, 10)
    prov = Provenance("0.1.0", "2.13.0", "1.20.1", "3.11.7", "abc", cell_key(model, threat,
                      evaluation), model.key(), "2026-11-25T00:00:00+00:00", 1.5, 0.0)
    values = {"attack_success_rate": 0.4, "defense_rate": 0.6, **metrics}
    return ResultLine(model, threat, evaluation,
                      Metrics.measured(0.98, values, extra_names=("reprogram_curve",)), prov,
                      Traits(True, True, "channels", True, "eps"))


def test_round_trip_is_exact_and_versioned():
    line = make_line(successes="u8:AAE=", reprogram_curve=[0.1, 0.2])
    text = line.to_json()
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    back = ResultLine.from_json(text)
    assert back == line
    assert back.metrics.extra == {"reprogram_curve": [0.1, 0.2]}
    assert back.cell_key() == line.provenance.cell_key
    assert back.model_id() == line.provenance.model_key


def test_keys_group_and_separate_what_they_should():
    line = make_line()
    other_setting = replace(line, threat=replace(line.threat, setting=Setting.WHITEBOX))
    assert other_setting.threat_key() != line.threat_key()
    assert other_setting.model_id() == line.model_id()
    new_plugin = replace(line, model=replace(line.model, version="0.2.0"))
    assert new_plugin.model_id() != line.model_id()  # a new plugin version retrains
    assert new_plugin.cell_key() != line.cell_key()
    more_clean = replace(line, evaluation=replace(line.evaluation, clean_images=5000))
    assert more_clean.threat_key() == line.threat_key()
    assert more_clean.group_key() != line.group_key()


def test_row_has_the_familiar_columns():
    row = make_line(successes="u8:AAE=").row()
    for col in ("dataset", "defense", "params", "attack", "attack_params", "attack_strength",
                "setting", "targeted", "n_examples", "n_clean", "clean_accuracy",
                "attack_success_rate", "defense_rate", "seed", "cell_key", "model_key",
                "hrsbench_version", "stochastic", "strength", "kind"):
        assert col in row
    assert row["strength"] == [10, 10] and row["kind"] == "evasion"


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["metrics"].update(defense_rate="high"), "metrics.defense_rate"),
    (lambda d: d["threat"].update(setting=3), "threat.setting"),
    (lambda d: d["model"].update(seed=True), "model.seed"),
    (lambda d: d["evaluation"].pop("repeats"), "evaluation.repeats"),
    (lambda d: d["provenance"].update(surprise=1), "provenance.surprise"),
    (lambda d: d.update(schema_version=7), "schema_version"),
])
def test_from_json_names_the_bad_field(edit, field):
    data = json.loads(make_line().to_json())
    edit(data)
    with pytest.raises(HrsbenchError, match=field.replace(".", r"\.")):
        ResultLine.from_json(json.dumps(data))


def test_nan_is_refused_both_ways():
    line = make_line(attack_success_rate=math.nan)
    with pytest.raises(HrsbenchError, match="attack_success_rate"):
        line.to_json()
    text = make_line().to_json().replace('"defense_rate": 0.6', '"defense_rate": NaN')
    with pytest.raises(HrsbenchError, match="NaN"):
        ResultLine.from_json(text)


def written_before_schema_2(path: Path) -> bool:
    return "schema_version" not in json.loads(path.read_text().splitlines()[0])


@pytest.mark.parametrize("path", [p for p in [*PUBLISHED, SCHEMA_1]
                                  if written_before_schema_2(p)], ids=lambda p: p.stem)
def test_published_lines_migrate_with_the_same_numbers(path):
    for raw in path.read_text().splitlines():
        v1 = json.loads(raw)
        line = ResultLine.from_dict(migrate(v1))
        row = line.row()
        for k in ("clean_accuracy", "attack_success_rate", "defense_rate", "attack_strength",
                  "n_examples", "n_clean", "seed", "epochs", "finished_at", "time_s"):
            assert row[k] == v1[k], k
        assert "batch_size" not in row["attack_params"]
        assert line.provenance.cell_key == line.cell_key()
        assert line.evaluation.n_clean is None  # the presets left n_clean to the whole split
        assert row["kind"] == ("clean" if v1["attack"] == "none" else "evasion")
        assert line.model.package == "hrsbench" and line.model.version == v1["hrsbench_version"]
        if v1["defense"] == "hrs":
            sizes = [int(c) for c in v1["params"]["channels"].split("x")]
            assert row["params"]["channels"] == sizes == row["strength"]


def test_migration_keeps_plugin_metrics_and_guesses_traits():
    v1 = {"dataset": "mnist", "defense": "resize", "params": {"pad": 4}, "strength": 4,
          "stochastic": True, "attack": "mine", "attack_params": {"batch_size": 8, "k": 1},
          "attack_strength": 0.1, "setting": "eot", "targeted": False, "n_examples": 3,
          "clean_accuracy": 0.9, "attack_success_rate": 0.5, "seed": 1,
          "hrsbench_version": "0.1.0", "custom_score": 3.0}
    line = ResultLine.from_dict(migrate(v1))
    assert line.traits == Traits(True, False, "pad", False, "eps")
    assert line.model.package == "unknown" and line.threat.params == {"k": 1}
    assert line.metrics.extra == {"custom_score": 3.0}
    assert line.metrics.defense_rate is None


def test_migration_refuses_a_line_without_required_fields():
    with pytest.raises(HrsbenchError, match="'clean_accuracy'"):
        migrate({"dataset": "mnist", "defense": "base", "params": {}, "attack": "none",
                 "attack_strength": 0.0, "setting": "none", "targeted": True, "n_examples": 0,
                 "attack_success_rate": None, "seed": 0, "hrsbench_version": "0.1.0"})


PRESETS = {"mnist-paper-cpu": PUBLISHED[0], "cifar10-paper-cpu": PUBLISHED[1],
           "quick": PUBLISHED[2]}
#: The precision each published run was made in (docs/quick/ with --precision fp32).
PUBLISHED_PRECISION = "fp32"


@pytest.mark.parametrize("preset", PRESETS)
def test_rerunning_a_published_preset_finds_every_migrated_cell(preset):
    from hrsbench.api import with_precision
    from hrsbench.engine.cells import expand
    from hrsbench.engine.config import load_config
    from hrsbench.plugin.registry import registry
    from hrsbench.results.store import read_lines

    cfg, _ = load_config(preset)
    keys = {c.key for c in expand(with_precision(cfg, PUBLISHED_PRECISION), registry())}
    found = {line.provenance.cell_key for line in read_lines(PRESETS[preset])}
    assert keys == found


@pytest.mark.parametrize(("path", "n_attack_lines"), [(PUBLISHED[0], 202), (PUBLISHED[1], 92)],
                         ids=["mnist", "cifar10"])
def test_published_grid_lines_carry_every_attacked_examples_outcome(path, n_attack_lines):
    """Every attack line of the published MNIST and CIFAR-10 grids has one success count per
    attacked example, in [0, repeats], and every clean line one correct count per clean image."""
    from hrsbench.results.store import load_results

    df = load_results(path)
    attacks = df[df["attack"] != "none"]
    assert len(attacks) == n_attack_lines
    for wins, n, repeats in zip(attacks["successes"], attacks["n_examples"], attacks["repeats"],
                                strict=True):
        assert len(wins) == n == 90 and wins.min() >= 0 and wins.max() <= repeats
    clean = df[df["attack"] == "none"]
    assert all(len(c) == 10_000 for c in clean["clean_correct"])


def test_load_results_decodes_the_counts(tmp_path):
    from hrsbench.results.outcomes import encode_counts
    from hrsbench.results.store import ResultStore, load_results

    store = ResultStore(tmp_path / "results.jsonl")
    store.append(make_line(successes=encode_counts([0, 5, 3]), successes_pick=encode_counts(
        [0, 2, 1])))
    old = json.loads(SCHEMA_1.read_text().splitlines()[1])  # a v1 line: no counts
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write(json.dumps(old) + "\n")
    df = load_results(tmp_path / "results.jsonl")
    assert df["successes"].iloc[0].tolist() == [0, 5, 3]
    assert df["successes_pick"].iloc[0].tolist() == [0, 2, 1]
    assert df["successes"].iloc[1] is None and df["schema_version"].tolist() == [3, 3]


def test_plugin_metrics_are_stored_as_json_values():
    import numpy as np

    metrics = Metrics.measured(np.float64(0.9), {"n_examples": 3, "defense_rate": np.float32(0.5),
                                                 "curve": np.array([0.25, 0.5]), "size": (2, 2)},
                               extra_names=("curve", "size"))
    assert metrics.extra == {"curve": [0.25, 0.5], "size": [2, 2]}
    assert type(metrics.defense_rate) is float and metrics.clean_accuracy == 0.9


def test_a_metric_unknown_to_the_schema_is_an_error_not_a_silent_extra():
    with pytest.raises(HrsbenchError, match="returned metric 'atack_success_rate' \\(did you mean "
                                            "'attack_success_rate'\\?\\)"):
        Metrics.measured(0.9, {"atack_success_rate": 0.5})
    with pytest.raises(HrsbenchError, match="threat 'toy' returned metric 'curve'"):
        check_metric_names({"curve": [1]}, (), "threat 'toy'")
    check_metric_names({"curve": [1], "n_examples": 2}, ("curve",))  # declared: kept
