"""What zeus-bso needs from trainables and the simulated SUT: a searched batch size, and a
trial that stops at its target (training.stop_at_target)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from pytest_basht.errors import WorkloadError
from pytest_basht.hydro.fused import FusedMnistFF
from pytest_basht.simulation.curve import Curve
from pytest_basht.sut.simulated import until_target
from pytest_basht.trainables import feedforward
from pytest_basht.trainables.base import config_seed
from pytest_basht.workload import from_mapping


def make_workload(**changes: Any) -> Any:
    data: dict[str, Any] = {"dataset": {"samples": 500},
                            "training": {"epochs": 3, "batch_size": 32},
                            "search": {"space": {"batch_size": [32, 128]}},
                            "goal": {"target": 0.5}}
    for key, value in changes.items():
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
    return from_mapping(data, "w.yaml")


class Alone:
    """A trial context without a study: collects the values reported."""

    def __init__(self, workload: Any, params: dict, artifact: Path) -> None:
        self.workload, self.params, self.artifact = workload, params, artifact
        self.seed = config_seed(workload.seed, params)
        self.number = 0
        self.values: list[float] = []

    def phase(self, name: str, epoch: int | None = None) -> Any:
        return contextlib.nullcontext()

    def report(self, epoch: int, value: float) -> None:
        self.values.append(value)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = make_workload()
    return FusedMnistFF.prepare(w, tmp_path_factory.mktemp("data"))


def trained(w: Any, data: Any, params: dict, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[float]]:
    sizes: list[int] = []
    real = feedforward.train_epoch

    def spy(model, optimizer, x, y, batch_size, generator):
        sizes.append(batch_size)
        return real(model, optimizer, x, y, batch_size, generator)

    monkeypatch.setattr(feedforward, "train_epoch", spy)
    t = FusedMnistFF()
    t.setup(w, data, "cpu")
    ctx = Alone(w, params, tmp_path / "m.pt")
    t.run_trial(ctx)  # type: ignore[arg-type]
    return sizes, ctx.values


def test_mnist_ff_trains_with_the_searched_batch_size(data, tmp_path, monkeypatch):
    sizes, values = trained(make_workload(), data, {"batch_size": 128}, tmp_path, monkeypatch)
    assert sizes == [128, 128, 128] and len(values) == 3
    sizes, _ = trained(make_workload(), data, {}, tmp_path, monkeypatch)
    assert sizes == [32, 32, 32]  # not searched: training.batch_size


def test_mnist_ff_stops_at_the_target(data, tmp_path, monkeypatch):
    w = make_workload(**{"training.stop_at_target": True, "goal.target": 0.05})
    sizes, values = trained(w, data, {"batch_size": 32}, tmp_path, monkeypatch)
    assert len(values) == 1 and values[0] >= 0.05 and sizes == [32]
    assert (tmp_path / "m.pt").exists()  # the model that met the target is kept
    w = make_workload(**{"goal.target": 0.05})
    assert len(trained(w, data, {"batch_size": 32}, tmp_path, monkeypatch)[1]) == 3


def test_fused_groups_share_a_batch_size():
    t = FusedMnistFF()
    w = make_workload()
    assert t.group_key(w, {"batch_size": 128}) != t.group_key(w, {"batch_size": 32})
    assert t.group_key(w, {}).endswith("/batch 32")


@pytest.mark.parametrize(("changes", "key"), [
    ({"search.space": {"batch_size": [32, 0]}}, "search.space.batch_size"),
    ({"search.space": {"batch_size": {"low": 16, "high": 64, "type": "float"}},
      "search.trials": 4}, "search.space.batch_size"),
    ({"training.stop_at_target": True, "search.fusion": 2}, "training.stop_at_target"),
])
def test_mnist_ff_refuses(changes, key):
    with pytest.raises(WorkloadError) as info:
        FusedMnistFF.check(make_workload(**changes))
    assert info.value.key == key


def test_simulated_curves_end_at_the_target():
    curve = Curve((0.5, 0.91, 0.95, 0.97), (1, 2, 3, 4), (1.0, 2.0, 3.0, 4.0),
                  (0.1, 0.1, 0.1, 0.1), (0, 0, 0, 0))
    stops = make_workload(**{"training.stop_at_target": True, "goal.target": 0.9})
    cut = until_target(curve, stops)
    assert cut.values == (0.5, 0.91) and cut.times_ns == (1, 2) and cut.state == "complete"
    assert until_target(curve, make_workload(**{"goal.target": 0.9})) is curve
    never = make_workload(**{"training.stop_at_target": True, "goal.target": 0.99})
    assert until_target(curve, never) is curve
    # a recording stopped short (pruned) that met the target before: it ends there, complete
    short = Curve((0.5, 0.92), (1, 2), (1.0, 2.0), (0.1, 0.1), (0, 0), "truncated")
    assert until_target(short, stops).state == "complete"
