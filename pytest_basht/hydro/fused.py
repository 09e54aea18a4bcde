"""Fused trials (Hydro, after HFTA): F feed-forward nets of one shape trained as one model.

The F nets' weights are stacked on a leading dimension and every layer is one batched
``torch.baddbmm``; each net keeps its own Adam hyperparameters (learning rate, betas,
weight decay as per-model tensors), its own initialization and its own data order (seeded
by its configuration, exactly as ``mnist-ff`` trains it alone), so a fused model follows
its unfused twin step for step. The loss is the SUM of the per-model losses: the gradient
of each model's parameters is then exactly its own loss's gradient (the mean would scale
it by 1/F). A model that is pruned or diverges is sliced out of the batch; the others go on.

``FusedMnistFF`` is ``mnist-ff`` as a ``trainables.group.FusableTrainable``: the SUT's
grouped ask/tell hands it groups of one shape (``group_key``) and ``run_group`` trains
them fused, at the width muP's scaling (``hydro.scaling``) gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pytest_basht.hydro.scaling import Surrogate
from pytest_basht.trainables.feedforward import (
    MnistFF,
    batch_size_of,
    feed_forward,
    hyperparameters,
)
from pytest_basht.trainables.group import FusableTrainable, GroupContext
from pytest_basht.workload import Workload

# --------------------------------------------------------------------------- model


class FusedMLP(nn.Module):
    """F feed-forward nets of one shape: weights (F, in, out), biases (F, 1, out).

    ``input_mults`` multiply each layer's input (muP's readout multiplier; 1 elsewhere).
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 input_mults: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(w) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b) for b in biases])
        self.input_mults = list(input_mults or [1.0] * len(weights))

    @classmethod
    def stack(cls, models: Sequence[nn.Module],
              input_mults: Sequence[float] | None = None) -> FusedMLP:
        """Fuse separately built nets (``feed_forward``) of one shape; copies their values."""
        layers = [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models]
        weights = [torch.stack([ls[i].weight.detach().t() for ls in layers]).contiguous()
                   for i in range(len(layers[0]))]
        biases = [torch.stack([ls[i].bias.detach() for ls in layers]).unsqueeze(1).contiguous()
                  for i in range(len(layers[0]))]
        return cls(weights, biases, input_mults)

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    def tensors(self) -> list[nn.Parameter]:
        """Every weight, then every bias, layer by layer (the optimizer's order)."""
        return [*self.weights, *self.biases]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (F, B, in), one batch per model, or (B, in) shared by all; → (F, B, out)."""
        if x.dim() == 2:
            x = x.expand(self.size, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if self.input_mults[i] != 1:
                x = x * self.input_mults[i]
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the models at ``index`` (new leaf parameters; gradients dropped)."""
        for plist in (self.weights, self.biases):
            for i, p in enumerate(plist):
                plist[i] = nn.Parameter(p.detach().index_select(0, index))

    def export(self, index: int) -> dict[str, torch.Tensor]:
        """Model ``index`` as a ``feed_forward`` state dict (input multipliers folded in)."""
        out: dict[str, torch.Tensor] = {}
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{2 * k}.weight"] = (w[index] * self.input_mults[k]).t().detach().clone()
            out[f"{2 * k}.bias"] = b[index, 0].detach().clone()
        return out


class FusedAdam:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient, as torch does; no
    amsgrad), step for step, for F models stacked on dim 0 of every parameter.

    ``lr``, ``betas`` and ``weight_decay`` hold one value per model; ``lr_mults`` and
    ``wd_mults`` one per parameter tensor (muP's per-layer corrections).
    """

    def __init__(self, params: Sequence[torch.Tensor], *, lr: Sequence[float],
                 betas: tuple[Sequence[float], Sequence[float]], weight_decay: Sequence[float],
                 eps: float = 1e-8, lr_mults: Sequence[float] | None = None,
                 wd_mults: Sequence[float] | None = None) -> None:
        self.params = list(params)
        f64 = {"dtype": torch.float64, "device": self.params[0].device}
        self.lr = torch.tensor(list(lr), **f64)
        self.beta1 = torch.tensor(list(betas[0]), **f64)
        self.beta2 = torch.tensor(list(betas[1]), **f64)
        self.weight_decay = torch.tensor(list(weight_decay), **f64)
        self.eps = eps
        self.lr_mults = list(lr_mults or [1.0] * len(self.params))
        self.wd_mults = list(wd_mults or [1.0] * len(self.params))
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        t = self.steps
        bias1 = 1 - self.beta1 ** t
        bias2_sqrt = (1 - self.beta2 ** t).sqrt()
        use_wd = bool((self.weight_decay != 0).any())
        for p, m, v, lr_mult, wd_mult in zip(self.params, self.exp_avg, self.exp_avg_sq,
                                             self.lr_mults, self.wd_mults, strict=True):
            if p.grad is None:
                continue

            def per_model(values: torch.Tensor, p: torch.Tensor = p) -> torch.Tensor:
                return values.to(p.dtype).view(-1, *([1] * (p.dim() - 1)))

            # torch.optim.Adam's single-tensor step, in place where it is, with each
            # scalar hyperparameter a per-model column (same operations, same rounding)
            grad = p.grad
            if use_wd:
                grad = torch.addcmul(grad, p, per_model(self.weight_decay * wd_mult))
            m.lerp_(grad, per_model(1 - self.beta1))
            v.mul_(per_model(self.beta2)).addcmul_(grad * per_model(1 - self.beta2), grad)
            denom = v.sqrt().div_(per_model(bias2_sqrt)).add_(self.eps)
            p.addcmul_(m.div(denom), per_model(self.lr * lr_mult / bias1), value=-1)

    def keep(self, index: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """Keep the state of the models at ``index``; ``params`` are the model's new ones."""
        self.params = list(params)
        self.exp_avg = [m.index_select(0, index) for m in self.exp_avg]
        self.exp_avg_sq = [v.index_select(0, index) for v in self.exp_avg_sq]
        cpu = index.to(self.lr.device)
        for name in ("lr", "beta1", "beta2", "weight_decay"):
            setattr(self, name, getattr(self, name).index_select(0, cpu))


def train_epoch_fused(model: FusedMLP, optimizer: FusedAdam, x: torch.Tensor, y: torch.Tensor,
                      batch_size: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One pass over the training data, each model in its own order; mean loss per model."""
    n = len(y)
    orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(x.device)
    total = torch.zeros(model.size, device=x.device)
    steps = 0
    for start in range(0, n, batch_size):
        idx = orders[:, start:start + batch_size].flatten()
        logits = model(x.index_select(0, idx).view(model.size, -1, x.shape[1]))
        losses = nn.functional.cross_entropy(
            logits.flatten(0, 1), y.index_select(0, idx), reduction="none"
        ).view(model.size, -1).mean(1)
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
        total += losses.detach()
        steps += 1
    return total / max(1, steps)


@torch.no_grad()
def accuracy_fused(model: FusedMLP, x: torch.Tensor, y: torch.Tensor,
                   batch: int = 2048) -> list[float]:
    correct = torch.zeros(model.size, device=x.device)
    for start in range(0, len(y), batch):
        pred = model(x[start:start + batch]).argmax(dim=-1)
        correct += (pred == y[start:start + batch]).sum(dim=1)
    return (correct / max(1, len(y))).tolist()


def adam_error(hp: dict[str, Any]) -> str | None:
    """torch.optim.Adam's own checks, so that a fused model fails as its twin would."""
    if not hp["learning_rate"] >= 0:
        return f"ValueError: Invalid learning rate: {hp['learning_rate']}"
    if not hp["weight_decay"] >= 0:
        return f"ValueError: Invalid weight_decay value: {hp['weight_decay']}"
    for i, key in enumerate(("beta1", "beta2")):
        if not 0 <= hp[key] < 1:
            return f"ValueError: Invalid beta parameter at index {i}: {hp[key]}"
    return None


def build_member(hp: dict[str, Any], seed: int, surrogate: Surrogate
                 ) -> tuple[nn.Sequential, torch.Generator]:
    """One model as ``mnist-ff`` builds it (same seed, same draws), at the surrogate's width,
    with muP's initial rescaling."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = feed_forward(surrogate.width, hp["layer_count"])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, rule in zip(linears, surrogate.rules(), strict=True):
            linear.weight.mul_(rule.weight_init)
            linear.bias.mul_(rule.bias_init)
    return model, generator


def fuse(hps: Sequence[dict[str, Any]], seeds: Sequence[int], surrogate: Surrogate,
         device: str = "cpu", dtype: torch.dtype = torch.float32
         ) -> tuple[FusedMLP, FusedAdam, list[torch.Generator]]:
    """The fused model, its optimizer and the models' data-order generators."""
    built = [build_member(hp, seed, surrogate) for hp, seed in zip(hps, seeds, strict=True)]
    rules = surrogate.rules()
    model = FusedMLP.stack([b[0] for b in built], [r.input_mult for r in rules]).to(
        device=device, dtype=dtype)
    lr_mults = [r.weight_lr for r in rules] + [1.0] * len(rules)
    wd_mults = [r.weight_decay for r in rules] + [1.0] * len(rules)
    optimizer = FusedAdam(model.tensors(), lr=[hp["learning_rate"] for hp in hps],
                          betas=([hp["beta1"] for hp in hps], [hp["beta2"] for hp in hps]),
                          weight_decay=[hp["weight_decay"] for hp in hps],
                          lr_mults=lr_mults, wd_mults=wd_mults)
    return model, optimizer, [b[1] for b in built]


# --------------------------------------------------------------------------- mnist-ff


class FusedMnistFF(MnistFF, FusableTrainable):
    """``mnist-ff`` that can also train fused groups and width-scaled surrogates."""

    name = "mnist-ff"

    def group_key(self, workload: Workload, params: dict[str, Any]) -> str:
        hp = hyperparameters(workload, params)
        return f"{hp['layer_count']}x{hp['layer_size']}/batch {batch_size_of(workload, params)}"

    def run_group(self, group: GroupContext) -> dict[int, float]:
        workload, d = group.workload, self.data
        training = workload.training
        hps = [hyperparameters(workload, m.params) for m in group.members]
        batch_size = batch_size_of(workload, group.members[0].params)  # one per group key
        live: list[int] = []
        for i, hp in enumerate(hps):
            error = adam_error(hp)
            if error is None:
                live.append(i)
            else:
                group.fail(i, error)
        if not live:
            return {}
        with group.phase("trial.load"):
            surrogate = Surrogate.of(hps[0]["layer_size"], hps[0]["layer_count"], group.scaling)
            model, optimizer, generators = fuse([hps[i] for i in live],
                                                [group.members[i].seed for i in live],
                                                surrogate, self.device)
        values: dict[int, float] = {}

        def keep(positions: list[int]) -> None:
            nonlocal live, generators
            if len(positions) == len(live):
                return
            index = torch.tensor(positions, dtype=torch.long, device=self.device)
            model.keep(index)
            optimizer.keep(index, model.tensors())
            live = [live[p] for p in positions]
            generators = [generators[p] for p in positions]

        for epoch in range(training.epochs):
            with group.phase("trial.train", epoch=epoch):
                losses = train_epoch_fused(model, optimizer, d["x_train"], d["y_train"],
                                           batch_size, generators).tolist()
            for i, loss in zip(live, losses, strict=True):
                if not math.isfinite(loss):
                    group.fail(i, f"diverged: training loss became {loss} in epoch {epoch}")
            keep([p for p, loss in enumerate(losses) if math.isfinite(loss)])
            if not live:
                return {}
            with group.phase("trial.validate", epoch=epoch):
                accuracies = accuracy_fused(model, d["x_val"], d["y_val"])
            going = []
            for p, (i, value) in enumerate(zip(live, accuracies, strict=True)):
                values[i] = value
                if group.report(i, epoch, value):
                    going.append(p)
            keep(going)
            if not live:
                return {}
        for p, i in enumerate(live):
            hp = {**hps[i], "layer_size": surrogate.width, "full_layer_size": hps[i]["layer_size"],
                  "scaling": group.scaling}
            torch.save({"hyperparameters": hp, "state": model.export(p)},
                       group.members[i].artifact)
        return {i: values[i] for i in live}
