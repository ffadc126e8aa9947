"""Native-bf16 detection: a CPU with AVX512-BF16 or AMX computes bf16 natively, one without
emulates it; a GPU answers for itself."""

from __future__ import annotations

import platform

import pytest

from hrsbench.engine.precision import bf16_native, cpu_flags


@pytest.mark.parametrize(("flags", "native"), [
    ({"avx2", "avx512f", "avx512_bf16"}, True),
    ({"avx2", "amx_bf16", "amx_tile"}, True),
    ({"avx2", "avx512f", "avx512_vnni"}, False),
    (set(), False),
])
def test_cpu_bf16_follows_its_flags(flags, native):
    assert bf16_native("cpu", frozenset(flags)) is native


def test_this_cpu_is_read_from_its_own_flags():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert bf16_native("cpu") is False
    else:
        assert bf16_native("cpu") == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def test_cuda_without_a_gpu_is_not_native():
    import torch

    if not torch.cuda.is_available():
        assert bf16_native("cuda") is False


# ---------------------------------------------------------------- the precision setting

SMALL = {"dataset": "mnist", "n_train": 5000, "n_test": 1, "n_clean": 200, "epochs": 1,
         "repeats": 1, "defenses": [{"name": "base"}],
         "attacks": [{"name": "fgsm", "strengths": [0.1]}]}


def test_auto_is_bf16_exactly_where_it_is_native(monkeypatch):
    from hrsbench.engine import precision

    monkeypatch.setattr(precision, "bf16_native", lambda device="cpu", flags=None: True)
    assert precision.resolve("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "bf16_native", lambda device="cpu", flags=None: False)
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("bf16", "cpu") == "bf16" and precision.resolve("fp32") == "fp32"


def test_fp32_keeps_the_keys_and_hash_written_before_precision_existed():
    from hrsbench.engine.config import parse_config
    from hrsbench.plugin.cache import stable_hash
    from hrsbench.results.record import MODEL_FORMAT, ModelSpec

    m = ModelSpec("mnist", "base", {}, 0, None, 5, "hrsbench", "0.1.0")
    assert m.precision == "fp32"
    assert m.key() == stable_hash([MODEL_FORMAT, "mnist", None, 5, 0, "base", {}, "hrsbench",
                                   "0.1.0"])
    bf16 = ModelSpec("mnist", "base", {}, 0, None, 5, "hrsbench", "0.1.0", "bf16")
    assert bf16.key() != m.key()
    cfg = parse_config(SMALL)
    assert parse_config({**SMALL, "precision": "fp32"}).hash == cfg.hash
    assert parse_config({**SMALL, "precision": "bf16"}).hash != cfg.hash


def test_a_model_trained_in_one_precision_is_never_loaded_for_the_other(data_dir, tmp_path):
    import hrsbench

    runs = {}
    for precision in ("fp32", "bf16", "fp32"):
        runs.setdefault(precision, []).append(hrsbench.run(
            SMALL, out=tmp_path / f"out-{precision}-{len(runs.get(precision, []))}",
            data_dir=data_dir, cache_dir=tmp_path / "cache", precision=precision,
            reports=False).lines)
    (fp32, again), (bf16,) = runs["fp32"], runs["bf16"]
    clean = {name: next(r for r in lines if r["attack"] == "none")
             for name, lines in (("fp32", fp32), ("bf16", bf16), ("again", again))}
    assert clean["fp32"]["precision"] == "fp32" and clean["bf16"]["precision"] == "bf16"
    assert clean["bf16"]["model_key"] != clean["fp32"]["model_key"]
    assert clean["bf16"]["train_time_s"] > 0  # trained anew, not the fp32 model
    assert clean["again"]["model_key"] == clean["fp32"]["model_key"]
    assert clean["again"]["train_time_s"] == 0  # the fp32 model, from the cache
    # bf16 training learns as fp32 does (40 steps: about 60 % either way)
    assert clean["fp32"]["clean_accuracy"] > 0.4
    assert abs(clean["bf16"]["clean_accuracy"] - clean["fp32"]["clean_accuracy"]) < 0.05


def test_schema_2_lines_read_as_fp32_with_their_keys():
    import json

    from hrsbench.results.migrate import migrate
    from hrsbench.results.record import SCHEMA_VERSION, ResultLine
    from tests.conftest import REPO

    raw = json.loads((REPO / "leaderboards/mnist-paper/results.jsonl").read_text()
                     .splitlines()[0])
    assert raw["schema_version"] == 2 and "precision" not in raw["model"]
    line = ResultLine.from_dict(migrate(raw))
    assert line.schema_version == SCHEMA_VERSION and line.model.precision == "fp32"
    assert line.model.key() == raw["provenance"]["model_key"]
    assert line.cell_key() == raw["provenance"]["cell_key"]


def test_bf16_training_keeps_fp32_weights(tmp_path):
    import torch

    from hrsbench import Arch, ModelCache, Trainer, base_model

    arch = Arch(in_channels=1, image_size=16, conv=(4, 4, 4, 4), fc=(16, 16), train_dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 16, 16, generator=g), torch.randint(10, (128,), generator=g)
    weights = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = base_model(arch)
        Trainer(x, y, epochs=1, seed=0, cache=ModelCache(tmp_path), batch_size=32,
                precision=precision).fit(model)
        weights[precision] = [p.detach().clone() for p in model.parameters()]
    assert all(p.dtype == torch.float32 for p in weights["bf16"])
    assert any(not torch.equal(a, b) for a, b in zip(*weights.values(), strict=True))
