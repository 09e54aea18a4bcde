"""Fused models against their unfused twins: same gradients, same Adam steps, same exports."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_basht.hydro.fused import (
    FusedAdam,
    FusedMLP,
    accuracy_fused,
    adam_error,
    fuse,
    train_epoch_fused,
)
from pytest_basht.hydro.scaling import Surrogate
from pytest_basht.trainables.feedforward import feed_forward, train_epoch

HPS = [  # different learning rates, betas and weight decays (one model without decay)
    {"layer_size": 16, "layer_count": 2, "learning_rate": 1e-3, "weight_decay": 0.0,
     "beta1": 0.9, "beta2": 0.999},
    {"layer_size": 16, "layer_count": 2, "learning_rate": 1e-2, "weight_decay": 1e-2,
     "beta1": 0.8, "beta2": 0.99},
    {"layer_size": 16, "layer_count": 2, "learning_rate": 3e-3, "weight_decay": 0.1,
     "beta1": 0.95, "beta2": 0.9},
    {"layer_size": 16, "layer_count": 2, "learning_rate": 5e-4, "weight_decay": 1e-3,
     "beta1": 0.5, "beta2": 0.999},
]
SEEDS = [11, 22, 33, 44]


def data(n: int = 800, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 784, generator=g, dtype=torch.float64),
            torch.randint(0, 10, (n,), generator=g))


def twins(hps: list[dict], seeds: list[int]) -> list[tuple[nn.Module, torch.optim.Adam,
                                                          torch.Generator]]:
    """What mnist-ff builds for each configuration alone (float64)."""
    out = []
    for hp, seed in zip(hps, seeds, strict=True):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = feed_forward(hp["layer_size"], hp["layer_count"]).double()
        opt = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"],
                               weight_decay=hp["weight_decay"], betas=(hp["beta1"], hp["beta2"]))
        out.append((model, opt, gen))
    return out


def max_gap(fused: FusedMLP, models: list[nn.Module]) -> float:
    gaps = []
    for i, model in enumerate(models):
        state = fused.export(i)
        for key, value in model.state_dict().items():
            gaps.append(float((state[key] - value).abs().max()))
    return max(gaps)


def test_sum_loss_gives_each_model_its_own_gradient():
    x, y = data(64)
    fused, _, _ = fuse(HPS, SEEDS, Surrogate(16, 16, 2), dtype=torch.float64)
    separate = twins(HPS, SEEDS)
    logits = fused(x)
    losses = nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(len(HPS)),
                                         reduction="none").view(len(HPS), -1).mean(1)
    losses.sum().backward()
    for i, (model, _, _) in enumerate(separate):
        nn.functional.cross_entropy(model(x), y).backward()
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        assert torch.allclose(fused.weights[0].grad[i].t(), first.weight.grad, rtol=0,
                              atol=1e-14)


def test_fused_adam_matches_separate_torch_adam_after_50_steps_float64():
    x, y = data(800)  # 25 batches of 32: two epochs are 50 steps
    fused, opt, gens = fuse(HPS, SEEDS, Surrogate(16, 16, 2), dtype=torch.float64)
    separate = twins(HPS, SEEDS)
    assert max_gap(fused, [m for m, _, _ in separate]) == 0
    for _ in range(2):
        fused_losses = train_epoch_fused(fused, opt, x, y, 32, gens)
        alone = [train_epoch(m, o, x, y, 32, g) for m, o, g in separate]
        # both sum epoch losses in a float32 accumulator (mnist-ff's train_epoch does)
        assert fused_losses.tolist() == pytest.approx(alone, abs=1e-6)
    assert opt.steps == 50
    gap = max_gap(fused, [m for m, _, _ in separate])
    assert gap < 1e-10, gap
    moved = max(float((fused.export(0)[k] - v).abs().max())
                for k, v in twins(HPS[:1], SEEDS[:1])[0][0].state_dict().items())
    assert moved > 1e-3, "the models trained"


def test_a_dropped_model_leaves_the_others_on_their_own_paths():
    x, y = data(800)
    fused, opt, gens = fuse(HPS, SEEDS, Surrogate(16, 16, 2), dtype=torch.float64)
    separate = twins(HPS, SEEDS)
    train_epoch_fused(fused, opt, x, y, 32, gens)
    for m, o, g in separate:
        train_epoch(m, o, x, y, 32, g)
    keep = torch.tensor([0, 2, 3])
    fused.keep(keep)
    opt.keep(keep, fused.tensors())
    gens = [gens[i] for i in (0, 2, 3)]
    separate = [separate[i] for i in (0, 2, 3)]
    train_epoch_fused(fused, opt, x, y, 32, gens)
    for m, o, g in separate:
        train_epoch(m, o, x, y, 32, g)
    assert fused.size == 3 and max_gap(fused, [m for m, _, _ in separate]) < 1e-10


def test_export_loads_into_feed_forward_with_the_readout_multiplier_folded_in():
    hp = {**HPS[1], "layer_size": 64}
    surrogate = Surrogate.of(64, 2, 4)
    fused, _, _ = fuse([hp, hp], [1, 2], surrogate, dtype=torch.float64)
    assert fused.input_mults == [1.0, 1.0, 4.0]
    x, _ = data(50)
    plain = feed_forward(surrogate.width, 2).double()
    plain.load_state_dict(fused.export(1))
    assert torch.allclose(plain(x), fused(x)[1], atol=1e-12)


def test_accuracy_fused_counts_per_model():
    x, y = data(100)
    fused, _, _ = fuse(HPS[:2], SEEDS[:2], Surrogate(16, 16, 2), dtype=torch.float64)
    separate = twins(HPS[:2], SEEDS[:2])
    expected = [float((m(x).argmax(1) == y).double().mean()) for m, _, _ in separate]
    assert accuracy_fused(fused, x, y, batch=32) == pytest.approx(expected)


@pytest.mark.parametrize("key,value,message", [
    ("learning_rate", -1.0, "Invalid learning rate"),
    ("weight_decay", -0.1, "Invalid weight_decay"),
    ("beta1", 1.0, "Invalid beta parameter at index 0"),
    ("beta2", -0.5, "Invalid beta parameter at index 1"),
])
def test_invalid_adam_hyperparameters_fail_as_torch_adam_does(key, value, message):
    hp = {**HPS[0], key: value}
    assert message in (adam_error(hp) or "")
    with pytest.raises(ValueError, match=message):
        torch.optim.Adam(feed_forward(4, 1).parameters(), lr=hp["learning_rate"],
                         weight_decay=hp["weight_decay"], betas=(hp["beta1"], hp["beta2"]))
    assert adam_error(HPS[0]) is None


def test_fused_adam_without_gradients_leaves_parameters():
    p = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    opt = FusedAdam([p], lr=[1.0, 1.0], betas=([0.9, 0.9], [0.99, 0.99]), weight_decay=[0, 0])
    opt.step()
    assert float(p.detach().abs().sum()) == 0
