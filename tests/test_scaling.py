"""Width-scaled surrogates against Microsoft's ``mup`` package, and ranking fidelity."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pytest_basht.hydro.fused import fuse, train_epoch_fused
from pytest_basht.hydro.scaling import Surrogate, ranking_fidelity, surrogate_width

mup = pytest.importorskip("mup")


def mup_twin(width: int, full: int, layer_count: int, hp: dict, seed: int
             ) -> tuple[nn.Module, torch.optim.Optimizer, torch.Generator]:
    """The surrogate as the mup package parametrizes it, with the target as base shape."""

    def net(w: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        fan_in = 784
        for _ in range(layer_count):
            layers += [nn.Linear(fan_in, w), nn.ReLU()]
            fan_in = w
        layers.append(mup.MuReadout(fan_in, 10))
        return nn.Sequential(*layers)

    base = net(full)
    torch.manual_seed(seed)  # the same draws as feed_forward(width, layer_count)
    model = net(width)
    mup.set_base_shapes(model, base)
    model = model.double()
    opt = mup.MuAdam(model.parameters(), lr=hp["learning_rate"],
                     weight_decay=hp["weight_decay"], betas=(hp["beta1"], hp["beta2"]))
    return model, opt, torch.Generator().manual_seed(seed)


def mup_step_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                   y: torch.Tensor, batch: int, gen: torch.Generator) -> None:
    order = torch.randperm(len(y), generator=gen)
    for start in range(0, len(y), batch):
        idx = order[start:start + batch]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


@pytest.mark.parametrize("layer_count,full,scaling", [(2, 64, 4), (3, 48, 2), (1, 32, 8),
                                                      (2, 50, 3)])
def test_fused_surrogate_matches_mup_after_50_steps(layer_count, full, scaling):
    hps = [{"layer_size": full, "layer_count": layer_count, "learning_rate": lr,
            "weight_decay": wd, "beta1": 0.9, "beta2": 0.99}
           for lr, wd in ((1e-3, 0.0), (1e-2, 1e-2))]
    seeds = [5, 6]
    surrogate = Surrogate.of(full, layer_count, scaling)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(800, 784, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (800,), generator=g)
    fused, opt, gens = fuse(hps, seeds, surrogate, dtype=torch.float64)
    twins = [mup_twin(surrogate.width, full, layer_count, hp, s)
             for hp, s in zip(hps, seeds, strict=True)]
    for _ in range(2):  # 2 × 25 batches: 50 steps
        train_epoch_fused(fused, opt, x, y, 32, gens)
        for model, o, gen in twins:
            mup_step_epoch(model, o, x, y, 32, gen)
    for i, (model, _, _) in enumerate(twins):
        with torch.no_grad():
            assert torch.allclose(fused(x[:64])[i], model(x[:64]), rtol=0, atol=1e-10)
        exported = fused.export(i)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        for k, linear in enumerate(linears[:-1]):
            gap = exported[f"{2 * k}.weight"] - linear.weight.detach()
            assert float(gap.abs().max()) < 1e-10


def test_rules_follow_mup_for_adam():
    s = Surrogate.of(256, 3, 8)
    assert (s.width, s.width_mult) == (32, 0.125)
    inp, h1, h2, out = s.rules()
    assert inp.weight_lr == inp.weight_init == inp.bias_init == inp.input_mult == 1
    assert h1 == h2 and h1.weight_lr == 8 and h1.weight_decay == 0.125
    assert h1.bias_init == pytest.approx(math.sqrt(0.125)) and h1.weight_init == 1
    assert out.input_mult == 8 and out.weight_lr == 1
    assert out.weight_init == out.bias_init == pytest.approx(math.sqrt(0.125))
    assert all(r.weight_lr == 1 and r.input_mult == 1 for r in Surrogate.of(256, 3, 1).rules())


def test_surrogate_width_rounds_and_stays_positive():
    assert [surrogate_width(w, s) for w, s in ((128, 2), (32, 8), (50, 3), (3, 8))] == \
        [64, 4, 17, 1]


def test_ranking_fidelity():
    same = ranking_fidelity([0.1, 0.5, 0.3, 0.9], [0.2, 0.6, 0.4, 0.95])
    assert same["kendall_tau"] == pytest.approx(1.0) and same["top1_agrees"] is True
    assert same["configs"] == 4
    reversed_ = ranking_fidelity([1, 2, 3], [3, 2, 1])
    assert reversed_["kendall_tau"] == pytest.approx(-1.0) and reversed_["top1_agrees"] is False
    mini = ranking_fidelity([1, 2, 3], [3, 2, 1], direction="minimize")
    assert mini["top1_agrees"] is False
    one = ranking_fidelity([0.5], [0.7])
    assert one["kendall_tau"] is None and "two or more" in one["note"]
    flat = ranking_fidelity([0.5, 0.5], [0.1, 0.2])
    assert flat["kendall_tau"] is None and "undefined" in flat["note"]
    gaps = ranking_fidelity([0.1, None, 0.3], [0.2, 0.5, float("nan")])
    assert gaps["configs"] == 1
