"""HRS plugin: switching, bottom-up training, caching and the attack-side models, on a tiny
synthetic architecture so that every test runs in well under a second or two."""

from __future__ import annotations

import itertools

import hrsbench_plugins.hrs as hrs
import pytest
import torch
from hrsbench_plugins.hrs import HRS, FixedPath, all_paths
from scipy.stats import chisquare
from torch import nn

from hrsbench import Arch, Classifier, HrsbenchError, ModelCache, Trainer
from hrsbench.plugin.params import validate

ARCH = Arch(in_channels=1, image_size=16, conv=(4, 4, 4, 4), fc=(16, 16), train_dropout=0.3)
SHAPE = (1, 16, 16)


class Tiny:
    """Stands in for a dataset: ``build`` needs only the architecture."""

    name = "tiny"
    arch = ARCH


def make_trainer(tmp_path, n: int = 64, seed: int = 0) -> Trainer:
    g = torch.Generator().manual_seed(123)
    x = torch.rand((n, *SHAPE), generator=g)
    y = torch.randint(10, (n,), generator=g)
    return Trainer(x, y, epochs=1, seed=seed, cache=ModelCache(tmp_path), key="t", batch_size=32)


def built(defense: HRS, seed: int = 0) -> hrs.HRSNet:
    torch.manual_seed(seed)
    return defense.build(Tiny()).eval()


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class CountFits:
    """Wraps ``Trainer.fit`` to count channel trainings, optionally failing at the n-th one."""

    def __init__(self, monkeypatch, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at
        original = Trainer.fit

        def fit(trainer, *args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt
            return original(trainer, *args, **kwargs)

        monkeypatch.setattr(Trainer, "fit", fit)


@pytest.mark.parametrize(
    "params",
    [
        {"channels": "10y10"},
        {"channels": "10x"},
        {"channels": "0x5"},
        {"channels": "5x5x5"},  # three widths, two blocks
        {"channels": "5x5x5", "split": "pool1,dropout,fc2"},
        {"switch": "batch"},
        {"epochs": "4;4"},
    ],
)
def test_bad_parameters_are_one_line_errors(params):
    with pytest.raises(HrsbenchError) as e:
        HRS(**params)
    assert "\n" not in str(e.value)


def test_unknown_split_stage_is_an_error():
    with pytest.raises(HrsbenchError, match="bad split"):
        HRS(split="fc9").build(Tiny())


def test_epochs_per_block(tmp_path):
    trainer = make_trainer(tmp_path)
    assert HRS().block_epochs(trainer) == [1, 1]
    assert HRS(epochs="3,2").block_epochs(trainer) == [3, 2]
    with pytest.raises(HrsbenchError):
        HRS(epochs="3,2,1").block_epochs(trainer)


def test_channels_follow_the_base_model_and_split():
    model = built(HRS(channels=(2, 3, 4), split="pool1,dropout"))
    assert model.widths == [2, 3, 4]
    names = [list(dict(b.channels[0].named_children())) for b in model.blocks]
    assert names[0][-1] == "pool1" and names[1][-1] == "dropout" and names[2][-1] == "logits"
    assert model(torch.rand(5, *SHAPE)).shape == (5, 10)


class Tag(nn.Module):
    """A channel that answers with its own index, so outputs show which channel ran."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x),), float(self.index))


@pytest.mark.parametrize("per_sample", [True, False])
def test_channel_choice_is_uniform(per_sample):
    """Chi-square over many draws of a 5-channel switching block."""
    block = hrs.SwitchingBlock([Tag(c) for c in range(5)], per_sample=per_sample).eval()
    torch.manual_seed(1)
    if per_sample:
        tags = block(torch.zeros(5000, 1))
    else:
        tags = torch.cat([block(torch.zeros(2, 1))[:1] for _ in range(2000)])
    counts = torch.bincount(tags.long(), minlength=5)
    assert counts.sum() in (5000, 2000)
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_per_sample_switching_routes_each_sample_through_its_own_path():
    model = built(HRS(channels=(3, 3)))
    x = torch.rand(64, *SHAPE)
    with torch.no_grad():
        out = model(x)  # eval mode: switching must still happen
        paths = all_paths(model.blocks, x)  # (9, 64, 10)
    match = (paths - out).abs().amax(-1) < 1e-5  # which paths explain each row
    assert match.any(0).all(), "every output is the output of some path"
    assert len(set(match.float().argmax(0).tolist())) > 1, "one batch uses several paths"
    with torch.no_grad():
        assert not torch.equal(model(x), out), "a second call draws again"


def test_call_switching_shares_one_path_per_batch():
    model = built(HRS(channels=(3, 3), switch="call"))
    x = torch.rand(64, *SHAPE)
    with torch.no_grad():
        out, paths = model(x), all_paths(model.blocks, x)
    assert ((paths - out).abs().amax((1, 2)) < 1e-5).any()


@pytest.mark.parametrize(("channels", "split"), [((3, 2), "dropout"), ((2, 3, 2), "pool1,dropout")])
def test_exact_expectation_is_the_mean_over_all_paths(channels, split):
    defense = HRS(channels=channels, split=split)
    model = built(defense)
    x = torch.rand(8, *SHAPE)
    with torch.no_grad():
        expected = torch.stack(
            [
                torch.softmax(FixedPath(model, choice)(x), -1)
                for choice in itertools.product(*(range(n) for n in model.widths))
            ]
        ).mean(0)
        got = defense.expectation(model)(x)
    torch.testing.assert_close(got, expected.log(), atol=1e-5, rtol=1e-5)


def test_surrogate_is_one_deterministic_path_sharing_weights():
    defense = HRS(channels=(4, 4), fixed_path_seed=3)
    model = built(defense)
    surrogate = defense.surrogate(model).train()  # stays deterministic even if asked to train
    x = torch.rand(16, *SHAPE)
    with torch.no_grad():
        a, b = surrogate(x), surrogate(x)
        paths = all_paths(model.blocks, x)
    assert torch.equal(a, b)
    i, j = surrogate.choice
    torch.testing.assert_close(a, paths[i * 4 + j])
    assert surrogate.path[0] is model.blocks[0].channels[i]
    assert HRS(channels=(4, 4), fixed_path_seed=3).surrogate(model).choice == surrogate.choice


def test_stochasticity_survives_art_predict_and_loss_gradient():
    defense = HRS(channels=(4, 4))
    model = built(defense)
    x = torch.rand(32, *SHAPE).numpy()
    y = torch.nn.functional.one_hot(torch.randint(10, (32,)), 10).numpy()
    clf = Classifier(model, SHAPE, nb_classes=10)
    assert not (clf.predict(x) == clf.predict(x)).all()
    assert not (clf.loss_gradient(x, y) == clf.loss_gradient(x, y)).all()
    for fixed in (defense.surrogate(model), defense.expectation(model)):
        clf = Classifier(fixed, SHAPE, nb_classes=10)
        assert (clf.predict(x) == clf.predict(x)).all()
        assert (clf.loss_gradient(x, y) == clf.loss_gradient(x, y)).all()


@pytest.mark.parametrize("cached_features", [True, False])
def test_lower_blocks_stay_frozen_while_upper_blocks_train(tmp_path, monkeypatch, cached_features):
    if not cached_features:
        monkeypatch.setattr(hrs, "FEATURE_CACHE_BYTES", 0)
    defense = HRS(channels=(2, 2))
    model = built(defense)
    trainer = make_trainer(tmp_path)
    defense.fit_block(model, trainer, 0)
    lower, upper = state(model.blocks[0]), state(model.blocks[1])
    defense.fit_block(model, trainer, 1)
    assert same(lower, state(model.blocks[0]))
    assert not same(upper, state(model.blocks[1]))
    assert all(p.requires_grad for p in model.parameters())


def test_trailing_dropout_is_replayed_only_when_it_ends_the_lower_blocks():
    default = built(HRS(channels=(2, 2)))
    assert isinstance(hrs._trailing_dropout(default.blocks[:1]), nn.Dropout)
    late = built(HRS(channels=(2, 2), split="fc2"))  # dropout inside block 1: features go live
    assert hrs._trailing_dropout(late.blocks[:1]) is None
    early = built(HRS(channels=(2, 2), split="pool1"))
    assert isinstance(hrs._trailing_dropout(early.blocks[:1]), nn.Identity)


def test_second_fit_trains_nothing_and_loads_the_same_weights(tmp_path, monkeypatch):
    defense = HRS(channels=(2, 2))
    first = built(defense, seed=0)
    fits = CountFits(monkeypatch)
    defense.fit(first, make_trainer(tmp_path), Tiny())
    assert fits.calls == 4
    second = built(defense, seed=1)
    defense.fit(second, make_trainer(tmp_path), Tiny())
    assert fits.calls == 4
    assert same(state(first), state(second))


def test_channels_are_cached_independently_of_width(tmp_path, monkeypatch):
    """A wider block reuses the narrower one's channels; the block above depends on the lower
    width, so it is retrained."""
    fits = CountFits(monkeypatch)
    narrow = built(HRS(channels=(2, 2)))
    HRS(channels=(2, 2)).fit(narrow, make_trainer(tmp_path), Tiny())
    wide = built(HRS(channels=(3, 2)))
    HRS(channels=(3, 2)).fit(wide, make_trainer(tmp_path), Tiny())
    assert fits.calls == 4 + 1 + 2
    assert same(state(narrow.blocks[0].channels), state(wide.blocks[0].channels[:2]))
    HRS(channels=(2, 3)).fit(built(HRS(channels=(2, 3))), make_trainer(tmp_path), Tiny())
    assert fits.calls == 7 + 1  # only the third block-2 channel is new


def test_interrupted_fit_resumes_at_the_next_untrained_channel(tmp_path, monkeypatch):
    defense = HRS(channels=(2, 2))
    fits = CountFits(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        defense.fit(built(defense), make_trainer(tmp_path), Tiny())
    fits.fail_at = None
    defense.fit(built(defense), make_trainer(tmp_path), Tiny())
    assert fits.calls == 3 + 2  # the failed call is retried, the first two are not


def test_channels_differ_by_seed(tmp_path):
    defense = HRS(channels=(2, 1))
    model = built(defense)
    defense.fit(model, make_trainer(tmp_path), Tiny())
    a, b = (state(c) for c in model.blocks[0].channels)
    assert not same(a, b)


def test_channels_are_a_list_of_widths():
    assert HRS(channels=[5, 5, 5], split="pool1,dropout").widths == [5, 5, 5]
    assert validate(HRS, {"channels": [10, 10]}, "cfg")["channels"] == (10, 10)
    for bad in ("10x10", [10, 2.5], [10, True]):
        with pytest.raises(HrsbenchError, match="'channels'.*tuple"):
            validate(HRS, {"channels": bad}, "cfg")
    for bad in ((), (0, 3), (True, 2), ("10", 2)):
        with pytest.raises(HrsbenchError, match="bad channels"):
            HRS(channels=bad)
    assert HRS.strength == "channels" and HRS.stochastic


def test_registered_as_a_defense():
    from hrsbench.plugin.registry import load_registry

    assert load_registry().get("defense", "hrs") is HRS
