"""``mnist-ff``: Basht's baseline model — a feed-forward net on MNIST, trained with Adam.

Hyperparameters: ``layer_size``, ``layer_count`` (hidden layers, ReLU), ``learning_rate``,
``weight_decay``, ``beta1``, ``beta2`` (Adam's betas); ``batch_size`` may be searched too
(else ``training.batch_size``). With ``training.stop_at_target`` a trial ends after the
first epoch whose validation accuracy meets ``goal.target``. Batches are cut from a seeded
permutation of in-memory tensors (no DataLoader workers to oversubscribe the cores);
``zero_grad`` every step; the loss is checked for finiteness once per epoch. A trial can
be continued (multi-fidelity): its checkpoint holds the model, Adam's state and the batch
order's generator, so a trial resumed after k epochs trains on as one that never stopped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pytest_basht.errors import WorkloadError
from pytest_basht.trainables.base import (
    DataInfo,
    Trainable,
    TrialContext,
    TrialDiverged,
    epoch_range,
    iter_batches,
)
from pytest_basht.trainables.mnist import prepare_splits
from pytest_basht.workload import Workload

MEAN, STD = 0.1307, 0.3081
HYPERPARAMETERS = {"layer_size": 64, "layer_count": 1, "learning_rate": 1e-3,
                   "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999}
#: Searchable besides the model's hyperparameters: the training's mini-batch size.
TRAINING_PARAMS = ("batch_size",)


def feed_forward(layer_size: int, layer_count: int, inputs: int = 784,
                 classes: int = 10) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for _ in range(layer_count):
        layers += [nn.Linear(width, layer_size), nn.ReLU()]
        width = layer_size
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def to_tensor(x: np.ndarray, device: str) -> torch.Tensor:
    return ((torch.from_numpy(x).float() / 255.0 - MEAN) / STD).to(device)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(y), batch):
        pred = model(x[start:start + batch]).argmax(dim=1)
        correct += int((pred == y[start:start + batch]).sum())
    model.train()
    return correct / max(1, len(y))


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
    """One pass over the training data; returns the mean loss."""
    loss_fn = nn.functional.cross_entropy
    order = torch.randperm(len(y), generator=generator).to(x.device)
    total = torch.zeros((), device=x.device)
    steps = 0
    for idx in iter_batches(len(y), batch_size, order):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.detach()
        steps += 1
    return float(total) / max(1, steps)


def hyperparameters(workload: Workload, params: dict[str, Any]) -> dict[str, Any]:
    merged = {**HYPERPARAMETERS, **workload.model.params, **params}
    return {"layer_size": int(merged["layer_size"]), "layer_count": int(merged["layer_count"]),
            "learning_rate": float(merged["learning_rate"]),
            "weight_decay": float(merged["weight_decay"]),
            "beta1": float(merged["beta1"]), "beta2": float(merged["beta2"])}


def batch_size_of(workload: Workload, params: dict[str, Any]) -> int:
    """The trial's mini-batch size: searched (``batch_size`` in the space), else the workload's."""
    return int(params.get("batch_size", workload.training.batch_size))


def check_training_params(workload: Workload) -> None:
    """A searched batch size takes positive integers; fused groups cannot stop at a target."""
    for dim in workload.search.space:
        if dim.name != "batch_size":
            continue
        values = dim.grid_values()
        if values is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                     for v in values):
            raise WorkloadError(workload.source, "search.space.batch_size",
                                "positive integers (a list, or an int range)", dim.to_dict())
    if workload.training.stop_at_target and workload.search.grouped:
        raise WorkloadError(workload.source, "training.stop_at_target",
                            "false with search.fusion or search.scaling > 1 (a fused group "
                            "trains every member for every epoch)", True)


def warm_up(device: str) -> None:
    """Pay torch's one-time costs here, in setup: the first Adam imports ~1 s of modules."""
    model = feed_forward(8, 1).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.zeros(2, 784, device=device)
    nn.functional.cross_entropy(model(x), torch.zeros(2, dtype=torch.long, device=device)
                                ).backward()
    optimizer.step()


class MnistFF(Trainable):
    name = "mnist-ff"
    resumable = True

    def __init__(self) -> None:
        self.data: dict[str, torch.Tensor] = {}
        self.workload: Workload | None = None
        self.device = "cpu"

    @classmethod
    def check(cls, workload: Workload) -> None:
        if workload.dataset.name.lower() != "mnist":
            raise WorkloadError(workload.source, "dataset.name", "'mnist' for model mnist-ff",
                                workload.dataset.name)
        if workload.training.algorithm.lower() != "adam":
            raise WorkloadError(workload.source, "training.algorithm",
                                "'adam' for model mnist-ff", workload.training.algorithm)
        if workload.goal.metric != "accuracy":
            raise WorkloadError(workload.source, "goal.metric", "'accuracy' for model mnist-ff",
                                workload.goal.metric)
        known = set(HYPERPARAMETERS)
        searchable = known | set(TRAINING_PARAMS)
        for dim in workload.search.space:
            if dim.name not in searchable:
                raise WorkloadError(workload.source, f"search.space.{dim.name}",
                                    "a hyperparameter of mnist-ff: "
                                    + ", ".join(sorted(searchable)))
        check_training_params(workload)
        for name in workload.model.params:
            if name not in known:
                raise WorkloadError(workload.source, f"model.params.{name}",
                                    "a hyperparameter of mnist-ff: " + ", ".join(sorted(known)))

    @classmethod
    def prepare(cls, workload: Workload, data_dir: Path) -> DataInfo:
        path = data_dir / "mnist-splits.npz"
        sizes = prepare_splits(workload.dataset, workload.seed, path)
        return DataInfo(str(path), sizes["train"], sizes["validation"], sizes["test"],
                        sizes["bytes"])

    def setup(self, workload: Workload, data: DataInfo, device: str) -> None:
        self.workload = workload
        self.device = device
        with np.load(data.path) as arrays:
            self.data = {
                "x_train": to_tensor(arrays["x_train"], device),
                "y_train": torch.from_numpy(arrays["y_train"]).to(device),
                "x_val": to_tensor(arrays["x_val"], device),
                "y_val": torch.from_numpy(arrays["y_val"]).to(device),
                "x_test": to_tensor(arrays["x_test"], device),
                "y_test": torch.from_numpy(arrays["y_test"]).to(device),
            }
        warm_up(device)

    def run_trial(self, ctx: TrialContext) -> float:
        assert self.workload is not None, "setup() runs before trials"
        hp = hyperparameters(self.workload, ctx.params)
        training = self.workload.training
        batch_size = batch_size_of(self.workload, ctx.params)
        goal = self.workload.goal
        d = self.data
        with ctx.phase("trial.load"):
            torch.manual_seed(ctx.seed)
            generator = torch.Generator().manual_seed(ctx.seed)
            model = feed_forward(hp["layer_size"], hp["layer_count"]).to(self.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"],
                                         weight_decay=hp["weight_decay"],
                                         betas=(hp["beta1"], hp["beta2"]))
            resume = getattr(ctx, "resume", None)  # see epoch_range: older contexts lack it
            if resume is not None:  # a continuation: go on as if never interrupted
                state = torch.load(resume, map_location=self.device, weights_only=True)
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                generator.set_state(state["generator"])
        value = math.nan
        epochs = epoch_range(ctx)
        epoch = epochs.start - 1
        for epoch in epochs:
            with ctx.phase("trial.train", epoch=epoch):
                loss = train_epoch(model, optimizer, d["x_train"], d["y_train"],
                                   batch_size, generator)
            if not math.isfinite(loss):
                raise TrialDiverged(f"training loss became {loss} in epoch {epoch}")
            with ctx.phase("trial.validate", epoch=epoch):
                value = accuracy(model, d["x_val"], d["y_val"])
            ctx.report(epoch, value)
            if training.stop_at_target and goal.met(value):
                break  # time to accuracy: the job is done once it meets its target
        torch.save({"hyperparameters": hp, "state": model.state_dict()}, ctx.artifact)
        checkpoint = getattr(ctx, "checkpoint", None)
        if checkpoint is not None:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "epochs": epoch + 1}, checkpoint)
        return value

    def test(self, artifact: Path) -> float:
        saved = torch.load(artifact, map_location=self.device, weights_only=True)
        hp = saved["hyperparameters"]
        model = feed_forward(hp["layer_size"], hp["layer_count"]).to(self.device)
        model.load_state_dict(saved["state"])
        return accuracy(model, self.data["x_test"], self.data["y_test"])
