"""The baseline as a plain Optuna script: what pytest-basht's overhead is measured against.

Four worker processes share one JournalStorage study with the same GridSampler seed, each
pinned round-robin to one core with one torch thread (the fastest layout on 2 cores), and
train the same model code on the same data. No spans, no meter, no messages.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path


def worker(wid: int, cores: list[int], journal: str, data: str, space: dict, seed: int) -> None:
    os.sched_setaffinity(0, {cores[wid % len(cores)]})
    import optuna
    import torch

    from pytest_basht.trainables.feedforward import (
        accuracy,
        feed_forward,
        to_tensor,
        train_epoch,
    )

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import numpy as np

    with np.load(data) as a:
        x, y = to_tensor(a["x_train"], "cpu"), torch.from_numpy(a["y_train"])
        xv, yv = to_tensor(a["x_val"], "cpu"), torch.from_numpy(a["y_val"])

    def objective(trial: optuna.Trial) -> float:
        p = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = feed_forward(p["layer_size"], p["layer_count"])
        opt = torch.optim.Adam(model.parameters(), lr=p["learning_rate"],
                               weight_decay=p["weight_decay"])
        acc = 0.0
        for _ in range(5):
            train_epoch(model, opt, x, y, 64, g)
            acc = accuracy(model, xv, yv)
        return acc

    study = optuna.load_study(study_name="plain", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal)),
        sampler=optuna.samplers.GridSampler(space, seed=seed))
    study.optimize(objective)


def run(workers: int = 4) -> float:
    """Wall seconds from start to the last worker's exit (data prepared beforehand)."""
    import optuna

    from pytest_basht.trainables.mnist import prepare_splits
    from pytest_basht.workload import from_mapping

    space = {"layer_size": [32, 128], "layer_count": [1, 2], "learning_rate": [0.001, 0.01],
             "weight_decay": [0, 0.0001]}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data.npz")
        prepare_splits(from_mapping({}).dataset, 42, Path(data))
        journal = str(Path(tmp) / "journal.log")
        t0 = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        optuna.create_study(study_name="plain", direction="maximize",
                            storage=optuna.storages.JournalStorage(
                                optuna.storages.journal.JournalFileBackend(journal)))
        cores = sorted(os.sched_getaffinity(0))
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=worker, args=(i, cores, journal, data, space, 42))
                 for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"plain optuna: {run(int(sys.argv[1]) if len(sys.argv) > 1 else 4):.2f} s")
