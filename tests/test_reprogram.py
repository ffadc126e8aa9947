"""Adversarial reprogramming: the locally connected layer, the program, its training against a
frozen stochastic target, resume, the score and table, and the threat cells of a run — all on
tiny synthetic tasks (seconds)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hrsbench_plugins.base import Base
from hrsbench_plugins.reprogram import (
    AdversarialProgram,
    LocallyConnected2d,
    Reprogram,
    Reprogrammed,
    Schedule,
    padding,
    train_program,
)
from torch import nn

from hrsbench import Arch, Dataset, HrsbenchError, ModelCache, base_model
from hrsbench.engine.cells import expand
from hrsbench.engine.config import parse_config
from hrsbench.engine.runner import run
from hrsbench.plugin.cache import stable_hash
from hrsbench.plugin.threat import ThreatContext, frozen
from hrsbench.report.leaderboard import write_run_reports
from hrsbench.report.reprogramming import (
    reprogramming_markdown,
    reprogramming_score,
    reprogramming_table,
    write_reprogramming,
)
from hrsbench.results.migrate import V1_REQUIRED as REQUIRED
from hrsbench.results.store import read_lines
from tests.toys import one_thread, registry_with

SOURCE_SHAPE = (1, 12, 12)
TARGET_ARCH = Arch(in_channels=3, image_size=16, conv=(4, 4, 4, 4), fc=(8, 8), train_dropout=0.5)


def source_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright 3×3 square at a class-specific place: learnable in an epoch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = 0.1 * rng.random((n, *SOURCE_SHAPE), dtype=np.float32)
    for i, label in enumerate(y):
        r, c = divmod(int(label), 4)
        x[i, 0, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3] = 1.0
    return x, y.astype(np.int64)


class ToySource(Dataset):
    name = "toy-source"
    arch = Arch(in_channels=1, image_size=12, conv=(4, 4, 4, 4), fc=(8, 8), train_dropout=0.5)
    files = ()

    def read(self, root, split):
        return source_data(64, seed=0 if split == "train" else 1)

    def load(self, split, n=None, data_dir=None):
        return source_data(n or 64, seed=0 if split == "train" else 1)


class ToyTarget(Dataset):
    name = "toy-target"
    arch = TARGET_ARCH
    files = ()

    def read(self, root, split):
        return self.load(split)

    def load(self, split, n=None, data_dir=None):
        rng = np.random.default_rng(2 if split == "train" else 3)
        n = n or 64
        return (rng.random((n, 3, 16, 16), dtype=np.float32),
                rng.integers(0, 10, n).astype(np.int64))


class Noise(nn.Module):
    """Input noise on every pass, whatever the mode: a stand-in for a deployed stochastic
    defense (HRS switching, dropout, Gaussian noise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.05 * torch.randn_like(x)


def stochastic_target(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(Noise(), base_model(TARGET_ARCH)).eval()


@pytest.fixture
def reg():
    return registry_with(datasets=[ToySource, ToyTarget])


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


# --- the locally connected layer and the program --------------------------------------------


def reference_lc(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """Per output position: its own window times its own weights, plus its own bias."""
    k, (oh, ow) = layer.kernel_size, layer.out_size
    out = torch.empty(len(x), layer.out_channels, oh, ow)
    for r in range(oh):
        for c in range(ow):
            window = x[:, :, r : r + k, c : c + k].reshape(len(x), -1)  # (n, channel, i, j)
            out[:, :, r, c] = window @ layer.weight[r * ow + c].T + layer.bias[:, r, c]
    return out


@pytest.mark.parametrize(("kernel", "size"), [(1, (4, 5)), (2, (6, 5)), (3, (7, 7))])
def test_locally_connected_equals_per_position_reference(kernel, size):
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, size, kernel)
    with torch.no_grad():
        layer.bias.normal_()  # zero at init: make it count
    x = torch.randn(4, 2, *size)
    got = layer(x)
    assert got.shape == (4, 3, size[0] - kernel + 1, size[1] - kernel + 1)
    torch.testing.assert_close(got, reference_lc(layer, x), rtol=1e-5, atol=1e-5)


def test_locally_connected_weights_are_not_shared():
    layer = LocallyConnected2d(1, 1, (3, 3), 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[3] = 1.0  # only the bottom-right position sees its window
    out = layer(torch.ones(1, 1, 3, 3))
    assert out[0, 0].tolist() == [[0.0, 0.0], [0.0, 4.0]]


@pytest.mark.parametrize(("kernel", "expected"), [(1, (2, 2)), (2, (2, 3)), (3, (3, 3)),
                                                  (4, (3, 4))])
def test_padding_gives_target_size(kernel, expected):
    assert padding(28, 32, kernel) == expected
    program = AdversarialProgram((1, 28, 28), (3, 32, 32), kernel)
    assert program(torch.rand(2, 1, 28, 28)).shape == (2, 3, 32, 32)


def test_padding_cannot_shrink():
    with pytest.raises(HrsbenchError, match="only pads"):
        padding(40, 32, 3)


@pytest.mark.parametrize("squash", ["tanh01", "relu_tanh"])
def test_program_output_stays_in_input_range(squash):
    torch.manual_seed(0)
    program = AdversarialProgram((1, 28, 28), (3, 32, 32), 3, squash)
    with torch.no_grad():
        program.lc.weight.mul_(1000.0)  # saturate the squash on purpose
        program.lc.bias.normal_(0.0, 1000.0)
    x = torch.cat([torch.rand(8, 1, 28, 28), torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)])
    out = program(x)
    out = out.detach()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.max()) > 0.99  # the whole range is reachable, not a sliver of it


# --- training against a frozen, stochastic target ---------------------------------------------


def test_target_frozen_and_unchanged_while_program_learns(reg, tmp_path):
    target = stochastic_target()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    flags = [p.requires_grad for p in target.parameters()]
    torch.manual_seed(0)
    program_init = AdversarialProgram(SOURCE_SHAPE, (3, 16, 16), 3).lc.weight.clone()
    ctx = ThreatContext(ToyTarget(), Base(), reg, ModelCache(tmp_path), "model", 0, repeats=2)
    threat = Reprogram(kernel=3, epochs=3, source="toy-source", n_train=256, n_test=128, lr=0.05,
                       batch_size=32)

    seen: list[bool] = []
    hook = target[1].register_forward_pre_hook(lambda m, a: seen.append(m.training))
    torch.manual_seed(0)  # the program starts from program_init
    metrics = threat.run(target, ctx)
    hook.remove()
    program = torch.load(next(tmp_path.glob("*.program.pt")), weights_only=True)["program"]
    assert not torch.equal(program["lc.weight"], program_init)  # while the program did learn

    for k, v in target.state_dict().items():
        assert torch.equal(v, before[k]), f"target weight {k} changed"
    assert [p.requires_grad for p in target.parameters()] == flags  # restored afterwards
    assert all(p.grad is None for p in target.parameters())
    assert seen and not any(seen)  # the target ran as deployed (eval) throughout
    assert len(metrics["reprogram_accuracy_per_epoch"]) == 3
    assert metrics["attack_success_rate"] == metrics["reprogram_accuracy_per_epoch"][-1]
    assert metrics["reprogram_best_accuracy"] == max(metrics["reprogram_accuracy_per_epoch"])
    assert metrics["program_parameters"] == 16 * 16 * 3 * 9 + 3 * 16 * 16


def test_program_learns_through_stochastic_target():
    """A random linear target with input noise: the program alone must carry the task. (A random
    tiny convnet passes too little signal to learn in a test's few steps; the real run on a
    trained CIFAR-10 model is in docs/reprogramming.md.)"""
    torch.manual_seed(0)
    target = nn.Sequential(Noise(), nn.Flatten(), nn.Linear(3 * 16 * 16, 10)).eval()
    for p in target.parameters():
        p.requires_grad_(False)
    net = Reprogrammed(AdversarialProgram(SOURCE_SHAPE, (3, 16, 16), 3), target, 10)
    x, y = source_data(256, 0)
    xt, yt = source_data(128, 1)
    hist = train_program(net, torch.from_numpy(x), torch.from_numpy(y), xt, yt,
                         Schedule(epochs=3, lr=2.0, batch_size=32, repeats=2))
    assert hist.accuracy[-1] > 0.5  # chance is 0.1


def test_frozen_restores_flags_and_mode():
    model = base_model(TARGET_ARCH).train()
    next(model.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    with frozen(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.training and [p.requires_grad for p in model.parameters()] == flags


def test_reprogrammed_keeps_target_in_eval():
    net = Reprogrammed(AdversarialProgram(SOURCE_SHAPE, (3, 16, 16), 2), stochastic_target(), 10)
    net.train()
    assert net.program.training and not net.target.training


def _fresh_net() -> Reprogrammed:
    target = stochastic_target()
    torch.manual_seed(1)
    for p in target.parameters():
        p.requires_grad_(False)
    return Reprogrammed(AdversarialProgram(SOURCE_SHAPE, (3, 16, 16), 3), target, 10)


def test_resume_equals_uninterrupted(tmp_path):
    x, y = source_data(128, 0)
    xt, yt = source_data(64, 1)
    schedule = Schedule(epochs=3, lr=0.05, batch_size=32, seed=4, repeats=2)
    args = (torch.from_numpy(x), torch.from_numpy(y), xt, yt, schedule)

    straight = _fresh_net()
    full = train_program(straight, *args, checkpoint=tmp_path / "a.program")

    def die_in_epoch_three(label, done, total):
        if done > 2 * total // 3:
            raise KeyboardInterrupt

    ckpt = tmp_path / "b.program"
    with pytest.raises(KeyboardInterrupt):
        train_program(_fresh_net(), *args, checkpoint=ckpt, progress=die_in_epoch_three)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed_net = _fresh_net()
    calls: list[int] = []
    resumed = train_program(resumed_net, *args, checkpoint=ckpt,
                            progress=lambda label, done, total: calls.append(done))
    assert min(calls) > 2 * len(x) // 32  # only the third epoch ran again
    assert resumed.accuracy == full.accuracy and len(full.accuracy) == 3
    for a, b in zip(straight.program.parameters(), resumed_net.program.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # a finished checkpoint is kept: rerunning costs nothing and returns the same history
    again = train_program(_fresh_net(), *args, checkpoint=ckpt, progress=calls.append)
    assert again.accuracy == full.accuracy


def test_bad_parameters_fail_in_one_line(reg):
    with pytest.raises(ValueError, match="kernel"):
        Reprogram(kernel=0)
    cfg = parse_config({"dataset": "toy-target", "defenses": [{"name": "base"}],
                        "threats": [{"name": "reprogram", "params": {"kernal": 3}}]})
    with pytest.raises(HrsbenchError, match="unknown parameter 'kernal'"):
        expand(cfg, reg)
    with pytest.raises(HrsbenchError, match="unknown config key 'parms'"):
        parse_config({"defenses": [{"name": "base"}],
                      "threats": [{"name": "reprogram", "parms": {}}]})


# --- score and table ----------------------------------------------------------------------------


def test_score_arithmetic():
    assert reprogramming_score(0.90, 0.30, 0.05) == pytest.approx(0.60 / 0.052)
    assert reprogramming_score(0.90, 0.95, 0.0) == pytest.approx(-0.05 / 0.002)
    assert reprogramming_score(0.90, 0.30, -0.002) is None  # Δt + η = 0
    assert reprogramming_score(0.90, 0.30, 0.05, eta=0.01) == pytest.approx(0.60 / 0.06)


def hand_line(defense: str, clean: float, curve: list[float], kernel: float = 3.0,
              at: str = "2026-01-01T00:00:00+00:00") -> dict:
    return {
        "dataset": "cifar10", "defense": defense, "params": {}, "strength": None,
        "attack": "reprogram", "attack_params": {"kernel": int(kernel), "epochs": len(curve)},
        "attack_strength": kernel, "setting": "whitebox", "targeted": False, "kind": "threat",
        "n_examples": 100, "n_test": 10, "n_clean": 100, "clean_accuracy": clean,
        "attack_success_rate": curve[-1], "seed": 0, "hrsbench_version": "0", "config_hash": "c",
        "cell_key": f"{defense}-{kernel}", "finished_at": at,
        "reprogram_accuracy_per_epoch": curve,
        "reprogram_accuracy_std_per_epoch": [0.01] * len(curve), "reprogram_n_classes": 10,
    }


def test_table_and_markdown_on_hand_made_lines(tmp_path):
    df = pd.DataFrame([
        hand_line("base", 0.80, [0.50, 0.90, 0.88]),
        hand_line("base", 0.70, [0.10, 0.20, 0.95], at="2025-01-01T00:00:00+00:00"),  # older
        hand_line("hrs", 0.75, [0.20, 0.40, 0.30]),
        hand_line("dropout", 0.79, [0.60, 0.85, 0.86]),
        hand_line("hrs", 0.75, [0.10, 0.20], kernel=2.0),  # no base with a 2×2 kernel
        {**hand_line("base", 0.80, [0.5]), "attack": "fgsm", "reprogram_accuracy_per_epoch": None},
    ])
    table = reprogramming_table(df)
    assert list(table["defense"]) == ["hrs", "hrs", "dropout", "base", "base"]
    hrs = table[(table["defense"] == "hrs") & (table["kernel"] == 3.0)].iloc[0]
    assert hrs["final_accuracy"] == 0.30 and hrs["best_accuracy"] == 0.40
    assert hrs["best_epoch"] == 2 and hrs["base_final_accuracy"] == 0.88
    assert hrs["delta_t"] == pytest.approx(0.05)
    assert hrs["score"] == pytest.approx((0.88 - 0.30) / (0.05 + 0.002))
    drop = table[table["defense"] == "dropout"].iloc[0]
    assert drop["score"] == pytest.approx((0.88 - 0.86) / (0.01 + 0.002))
    assert table[table["kernel"] == 2.0]["score"].isna().all()
    assert table[table["defense"] == "base"]["score"].isna().all()

    md = reprogramming_markdown(table)
    assert "| 3×3 | hrs | 75.00 | 5.00 | 30.00 | 40.00 | 2 | 3 | 11.15 |" in md
    assert md.count("\n|") == len(table) + 1  # header rule and one row per line

    written = write_reprogramming(df, tmp_path)
    assert [p.name for p in written] == ["reprogramming.md", "reprogramming.png"]
    assert written[1].stat().st_size > 1000


# --- the run pipeline ---------------------------------------------------------------------------

RUN = {
    "dataset": "toy-target", "n_train": 64, "n_clean": 32, "epochs": 1, "repeats": 2,
    "defenses": [{"name": "base"}],
    "threats": [{"name": "reprogram",
                 "params": {"epochs": 2, "source": "toy-source", "n_train": 128, "n_test": 64,
                            "batch_size": 32},
                 "grid": {"kernel": [2, 3]}}],
}


def test_run_writes_threat_lines(reg, tmp_path):
    cfg = parse_config(RUN)
    cells = expand(cfg, reg)
    assert [(c.kind, c.attack, c.attack_strength) for c in cells] == [
        ("attack", "none", 0.0), ("threat", "reprogram", 2.0), ("threat", "reprogram", 3.0)]
    assert cells[0].to_dict()["kind"] == "attack" and cells[1].to_dict()["kind"] == "threat"

    out = tmp_path / "out"
    lines = run(cfg, out, cache_dir=tmp_path / "cache", reg=reg)
    threat_lines = [r for r in lines if r["kind"] not in ("clean", "evasion")]
    assert len(threat_lines) == 2
    for r in threat_lines:
        assert all(k in r for k in REQUIRED)
        assert r["attack"] == "reprogram" and r["setting"] == "whitebox"
        assert r["attack_strength"] == r["attack_params"]["kernel"]
        assert len(r["reprogram_accuracy_per_epoch"]) == 2
        assert r["attack_success_rate"] == r["reprogram_accuracy_per_epoch"][-1]
        assert r["reprogram_best_accuracy"] == max(r["reprogram_accuracy_per_epoch"])
    assert len(read_lines(out / "results.jsonl")) == 3
    assert not (out / "sanity.json").exists()  # the engine writes results only
    write_run_reports(out)
    sanity = json.loads((out / "sanity.json").read_text())
    assert sanity  # threat lines do not break the gradient-masking report

    again = run(cfg, out, cache_dir=tmp_path / "cache", reg=reg)  # all done: nothing reruns
    assert [r["cell_key"] for r in again] == [r["cell_key"] for r in lines]
    assert len(Path(out / "results.jsonl").read_text().splitlines()) == 3


def test_config_hash_unchanged_without_threats():
    plain = {"defenses": [{"name": "base"}]}
    a = parse_config(plain)
    # the fields of a one-seed fp32 config written before threats, seeds lists and precision
    before_threats = {**{k: v for k, v in asdict(a).items()
                         if k not in ("threats", "reference", "seeds", "precision")}, "seed": 0}
    assert a.hash == stable_hash(before_threats)
    assert parse_config({**plain, "threats": [{"name": "reprogram"}]}).hash != a.hash
