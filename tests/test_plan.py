"""The dry-run plan: shared training found by probing, the critical path, list schedules, and
estimates from the timings of a tiny run's own result lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.engine.plan import (
    History,
    PlannedTask,
    Rates,
    build_plan,
    critical_path,
    dry_run,
    makespan,
    read_history,
)
from hrsbench.engine.schedule import model_pieces, new_pieces, sharing
from hrsbench.plugin.cache import ModelCache
from hrsbench.plugin.registry import registry

SHARED = {
    "dataset": "mnist", "epochs": 1, "n_test": 1,
    "defenses": [{"name": "base"}, {"name": "sap"},
                 {"name": "dropout", "params": {"test_rate": 0.3}},
                 {"name": "hrs", "params": {"channels": [2, 2]}},
                 {"name": "hrs", "params": {"channels": [3, 3]}}],
}


def test_probing_finds_the_training_models_share():
    reg = registry()
    cells = expand(parse_config(SHARED), reg)
    pieces = model_pieces(cells, reg)
    keys = {c.defense + "".join(map(str, c.params.get("channels", ()))): c.model_key
            for c in cells}
    after, new = sharing(pieces), new_pieces(pieces)
    base, hrs2, hrs3 = keys["base"], keys["hrs22"], keys["hrs33"]
    assert after[keys["sap"]] == (base,) and after[keys["dropout"]] == (base,)
    assert after[hrs3] == (hrs2,) and after[base] == () and after[hrs2] == ()
    counts = {k: sorted(new[keys[k]].values()) for k in ("base", "sap", "hrs22", "hrs33")}
    # HRS 3×3 reuses block 1's first two channels; its block 2 sits on 3 lower channels: new.
    assert counts == {"base": [1], "sap": [], "hrs22": [2, 2], "hrs33": [1, 3]}


def test_rates_split_a_training_time_by_piece_shape():
    # HRS 5×5 then 10×10 as recorded on MNIST (5 epochs): block-1 channels at 23 s per epoch,
    # block-2 channels at 5.6 s; the 10×10 is charged for its 5 + 10 new channels only.
    rates = Rates.fit([(Counter(b1=5, b2=5), 143.0), (Counter(b1=5, b2=10), 171.0)])
    assert rates.per_shape == pytest.approx({"b1": 23.0, "b2": 5.6})
    assert rates.cost(Counter(b1=5, b2=30), epochs=40) == pytest.approx(40 * (115 + 168))
    # One training cannot tell the shapes apart: every piece then costs the mean.
    alone = Rates.fit([(Counter(b1=5, b2=5), 143.0)])
    assert alone.per_shape == {} and alone.cost(Counter(b1=1, b2=3), 1) == pytest.approx(57.2)


def chain(*specs: tuple[str, float, tuple[str, ...]]) -> list[PlannedTask]:
    return [PlannedTask(k, "cell", k, False, s, "test", after) for k, s, after in specs]


def test_critical_path_and_schedules():
    tasks = chain(("m1", 10, ()), ("m2", 5, ("m1",)), ("a", 1, ("m1",)), ("b", 4, ("m2",)),
                  ("m3", 2, ()), ("c", 2, ("m3",)))
    length, path = critical_path(tasks)
    assert length == 19 and [t.key for t in path] == ["m1", "m2", "b"]
    assert makespan(tasks, 1) == 24  # all the work, one task at a time
    assert makespan(tasks, 64) == 19  # unlimited workers reach the critical path
    assert 19 <= makespan(tasks, 2) <= 24


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    """A finished tiny run: its lines are the timings the plan estimates from."""
    from hrsbench.engine.runner import run

    out = tmp_path_factory.mktemp("tiny")
    cache = tmp_path_factory.mktemp("tiny-cache")
    cfg = {"dataset": "mnist", "n_train": 300, "n_test": 1, "n_clean": 100, "epochs": 1,
           "repeats": 1, "defenses": [{"name": "base"}],
           "attacks": [{"name": "pgd", "strengths": [0.1, 0.2], "params": {"max_iter": 5}}]}
    run(parse_config(cfg), out, data_dir=data_dir, cache_dir=cache)
    return cfg, out, cache


def test_plan_of_a_finished_run_has_nothing_to_run(tiny_run):
    cfg, out, cache = tiny_run
    reg = registry()
    text = "\n".join(dry_run(expand(parse_config(cfg), reg), out, ModelCache(cache), reg))
    assert "base" in text and "cached" in text
    assert "to run: 0 tasks" in text
    assert "check: 2 finished cells" in text


def test_plan_estimates_new_cells_from_similar_ones(tiny_run):
    cfg, out, cache = tiny_run
    reg = registry()
    more = {**cfg, "attacks": [{"name": "pgd", "strengths": [0.1, 0.2, 0.3],
                                "params": {"max_iter": 5}}], "epochs": 2}
    rows = read_history([Path(out) / "results.jsonl"])
    recorded = {r["cell_key"]: r["time_s"] for r in rows}
    cells = expand(parse_config(more), reg)
    plan = build_plan(cells, set(recorded), ModelCache(cache), reg, History(rows))
    model = next(t for t in plan.tasks if t.kind == "model")
    trained = max(r["train_time_s"] for r in rows)
    # Two epochs of the same training: twice the recorded epoch, by the per-epoch rate.
    assert not model.done and model.cost == pytest.approx(2 * trained)
    attacked = [t for t in plan.tasks if t.kind == "cell" and "pgd" in t.label]
    assert {t.basis for t in attacked} == {"other strength"}
    times = sorted(r["time_s"] for r in rows if r["attack"] == "pgd")
    assert all(t.cost == pytest.approx(sum(times) / 2) for t in attacked)


def test_cli_dry_run_prints_the_plan_and_runs_nothing(tiny_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hrsbench.cli import app

    cfg, out, cache = tiny_run
    config = tmp_path / "tiny.toml"
    config.write_text(_toml(cfg))
    monkeypatch.setattr("hrsbench.engine.runner.obtain_model", lambda *a: pytest.fail("trained"))
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "--cache-dir",
                                      str(cache), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "to run: 0 tasks" in result.output and "critical path" in result.output
    assert "8 workers" in result.output and "64 workers" in result.output


@pytest.mark.parametrize("args, message", [
    (["--executor", "dask"], "unknown executor 'dask'"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--executor", "ray", "--device", "cuda:1"], "use --device cuda"),
])
def test_cli_bad_executor_options_are_one_line(tmp_path, args, message):
    from typer.testing import CliRunner

    from hrsbench.cli import app

    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path), "--dry-run", *args])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _toml(cfg: dict) -> str:
    """The tiny config as TOML (flat keys, then one table per defense and attack)."""
    import json

    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, list)]
    for table in ("defenses", "attacks"):
        for entry in cfg[table]:
            lines.append(f"[[{table}]]")
            for k, v in entry.items():
                if isinstance(v, dict):
                    inner = ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items())
                    lines.append(f"{k} = {{ {inner} }}")
                else:
                    lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def test_plan_and_run_schedule_the_same_piece_tasks(tmp_path):
    """A cached model loads whole: neither the run nor its dry-run plan makes piece tasks for it,
    while an uncached one trains each channel as a task."""
    from hrsbench.engine.schedule import scheduled_pieces
    from tests.test_executors import HRS_RUN, ParallelHRS
    from tests.toys import registry_with

    reg = registry_with(defenses=[ParallelHRS])
    cells = expand(parse_config(HRS_RUN), reg)
    cache = ModelCache(tmp_path)

    def pieces_to_train() -> list[str]:
        plan = build_plan(cells, set(), cache, reg, History([]))
        return [t.key for t in plan.tasks if t.kind == "piece" and not t.done]

    scheduled = [p.key for p in scheduled_pieces(cells, reg, cache).tasks]
    assert len(scheduled) == 8 and pieces_to_train() == ["piece:" + k for k in scheduled]
    for key in {c.model_key for c in cells}:  # both models in the cache, none of their pieces
        cache.path(key).parent.mkdir(parents=True, exist_ok=True)
        cache.path(key).touch()
    assert scheduled_pieces(cells, reg, cache).tasks == [] and pieces_to_train() == []


GPU_SUMMARY = {
    "device": "cuda", "started_at": "2026-01-02T03:04:05+00:00",
    "stages": {"environment": {"ok": True, "gpu": "Test GPU"},
               "throughput": {"ok": True, "seconds": 1.0,
                              "mnist": {"train_images_per_s": 1000.0,
                                        "attack_image_steps_per_s": 2560.0}}},
}


def test_gpu_plan_estimates_from_a_gpu_check_summary(tmp_path, monkeypatch):
    import json

    path = tmp_path / "summary.json"
    path.write_text(json.dumps(GPU_SUMMARY))
    monkeypatch.setenv("HRSBENCH_GPU_CHECK", str(path))
    cfg = parse_config({"dataset": "mnist", "epochs": 2, "n_train": 500, "n_test": 2,
                        "defenses": [{"name": "base"}],
                        "attacks": [{"name": "pgd", "strengths": [0.1],
                                     "params": {"max_iter": 10}}]})
    reg = registry()
    lines = dry_run(expand(cfg, reg), tmp_path / "out", ModelCache(tmp_path / "c"), reg, "cuda")
    assert lines[0].startswith("GPU estimates from gpu_check on Test GPU, 2026-01-02")
    model = next(line for line in lines if line.strip().startswith("base ") and "train" in line)
    assert "1 s" in model and "GPU rate" in model  # 2 epochs × 500 images at 1,000 images/s
    # one batch of 18 targeted pairs × 10 steps, priced per batch of 256 at 2,560 image-steps/s
    from hrsbench.engine.plan import DeviceRates

    pgd = next(c for c in expand(cfg, reg) if c.attack == "pgd")
    assert DeviceRates.read(path).cell_cost(pgd) == pytest.approx(0.15 + 10 * 256 / 2560)


def test_gpu_plan_without_a_summary_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HRSBENCH_GPU_CHECK", str(tmp_path / "missing.json"))
    cfg = parse_config({"dataset": "mnist", "epochs": 1, "n_test": 1,
                        "defenses": [{"name": "base"}]})
    reg = registry()
    lines = dry_run(expand(cfg, reg), tmp_path / "out", ModelCache(tmp_path / "c"), reg, "cuda")
    assert lines[0].startswith("no gpu_check summary at") and "recorded timings" in lines[0]
    cpu = dry_run(expand(cfg, reg), tmp_path / "out", ModelCache(tmp_path / "c"), reg, "cpu")
    assert not any("gpu_check" in line for line in cpu)


def test_shipped_gpu_summary_reads():
    from hrsbench.engine.plan import device_rates

    rates, source = device_rates("cuda")
    assert rates is not None and rates.train["mnist"] > 0 and rates.attack["cifar10"] > 0
    assert "gpu_check on" in source
