"""Fusion throughput: F = 8 fused models against the same 8 models trained one after another.

Side by side in one process, alternately (sequential, fused, fused + scaled, sequential,
...): the baseline's MNIST split, 8 configurations of one shape (different learning rates,
betas and weight decays), mnist-ff's own training code for the sequential arm. Prints
training throughput (trials per second) and energy per trial for each arm and their ratios.
Energy comes from the estimate meter's windows (CCF's linear model on this process's CPU
time): it is an ESTIMATE, not a measurement. The fused models follow their unfused twins
(same initialization and data order), so their accuracies are printed side by side too.

    python benchmarks/perf/fusion_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch

from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.hydro.fused import accuracy_fused, fuse, train_epoch_fused
from pytest_basht.hydro.scaling import Surrogate
from pytest_basht.trainables.feedforward import accuracy, feed_forward, to_tensor, train_epoch
from pytest_basht.trainables.mnist import prepare_splits
from pytest_basht.workload import from_mapping

F = 8


def configs(width: int, layers: int) -> list[dict]:
    return [{"layer_size": width, "layer_count": layers, "learning_rate": lr,
             "weight_decay": wd, "beta1": b1, "beta2": 0.999}
            for lr, wd, b1 in ((1e-3, 0, 0.9), (2e-3, 1e-4, 0.9), (5e-4, 0, 0.8),
                               (1e-3, 1e-3, 0.85), (3e-3, 0, 0.9), (1e-3, 1e-4, 0.95),
                               (7e-4, 1e-5, 0.9), (1.5e-3, 0, 0.7))][:F]


def load(device: str) -> dict[str, torch.Tensor]:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist.npz"
        prepare_splits(from_mapping({}).dataset, 42, path)
        with np.load(path) as a:
            return {"x": to_tensor(a["x_train"], device), "y": torch.from_numpy(a["y_train"]),
                    "xv": to_tensor(a["x_val"], device), "yv": torch.from_numpy(a["y_val"])}


def sequential(hps: list[dict], d: dict, epochs: int, batch: int) -> list[float]:
    """What mnist-ff does for each trial, one after another."""
    out = []
    for seed, hp in enumerate(hps):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = feed_forward(hp["layer_size"], hp["layer_count"])
        opt = torch.optim.Adam(model.parameters(), lr=hp["learning_rate"],
                               weight_decay=hp["weight_decay"], betas=(hp["beta1"], hp["beta2"]))
        for _ in range(epochs):
            train_epoch(model, opt, d["x"], d["y"], batch, gen)
            acc = accuracy(model, d["xv"], d["yv"])
        out.append(acc)
    return out


def fused(hps: list[dict], d: dict, epochs: int, batch: int, scaling: int = 1) -> list[float]:
    surrogate = Surrogate.of(hps[0]["layer_size"], hps[0]["layer_count"], scaling)
    model, opt, gens = fuse(hps, list(range(len(hps))), surrogate)
    for _ in range(epochs):
        train_epoch_fused(model, opt, d["x"], d["y"], batch, gens)
        accs = accuracy_fused(model, d["xv"], d["yv"])
    return accs


def measure(monitor: EnergyMonitor, run: Callable[[], list[float]]) -> tuple[float, float,
                                                                              list[float]]:
    """(seconds, joules, accuracies) of one arm, in one energy window."""
    with monitor.window("arm") as w:
        t0 = time.perf_counter()
        accs = run()
        seconds = time.perf_counter() - t0
    return seconds, w.energy_j, accs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128],
                        help="hidden widths (the baseline grid's: 32 and 128)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a worker's)")
    parser.add_argument("--scaling", type=int, default=8, help="S of the fused + scaled arm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = load("cpu")
    monitor = EnergyMonitor(EstimateMeter(), hz=10)
    monitor.start()
    print(f"{F} models × {args.layers} hidden layers, batch {args.batch}, {args.epochs} epochs "
          f"on {len(d['y'])} samples, {args.threads} torch thread(s), median of "
          f"{args.repeats}; energy: {monitor.source} — an ESTIMATE, not a measurement")
    for width in args.widths:
        compare(monitor, d, configs(width, args.layers), args)
    monitor.stop()


def compare(monitor: EnergyMonitor, d: dict, hps: list[dict], args: argparse.Namespace) -> None:
    arms: dict[str, Callable[[], list[float]]] = {
        "sequential": lambda: sequential(hps, d, args.epochs, args.batch),
        "fused": lambda: fused(hps, d, args.epochs, args.batch),
        f"fused S={args.scaling}": lambda: fused(hps, d, args.epochs, args.batch, args.scaling),
    }
    sequential(hps[:1], d, 1, args.batch)  # warm-up: torch's one-time costs out of the timings
    fused(hps[:2], d, 1, args.batch)
    results: dict[str, list[tuple[float, float, list[float]]]] = {k: [] for k in arms}
    print(f"\n== width {hps[0]['layer_size']}")
    for r in range(args.repeats):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for name in order:
            results[name].append(measure(monitor, arms[name]))
        line = " | ".join(f"{n} {results[n][-1][0]:6.2f} s {results[n][-1][1]:7.2f} J"
                          for n in arms)
        print(f"round {r + 1}: {line}")
    base_s = statistics.median(x[0] for x in results["sequential"])
    base_j = statistics.median(x[1] for x in results["sequential"]) / F
    for name in arms:
        s = statistics.median(x[0] for x in results[name])
        j = statistics.median(x[1] for x in results[name]) / F
        print(f"{name:>12}: {F / s:6.2f} trials/s, {j:7.3f} J/trial | throughput × "
              f"{base_s / s:5.2f}, energy per trial × {j / base_j:5.3f}")
    seq_acc, fused_acc = results["sequential"][-1][2], results["fused"][-1][2]
    gap = max(abs(a - b) for a, b in zip(seq_acc, fused_acc, strict=True))
    print(f"validation accuracy, sequential vs fused (the same models): max gap {gap:.4f}")
    ratio = base_s / statistics.median(x[0] for x in results["fused"])
    print(f"fused F={F} / sequential throughput ratio: {ratio:.2f} (target ≥ 2 on CPU)")

if __name__ == "__main__":
    main()
