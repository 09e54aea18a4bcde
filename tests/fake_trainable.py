"""A conftest for pytester runs: a fast, torch-free trainable whose params trigger faults.

``x`` picks the behaviour: -1 raises, -2 returns NaN, -3 hangs (for the timeout), -4
allocates 640 MB (for the memory watchdog); other values train a quadratic for
``training.epochs`` epochs of ``sleep`` seconds each.
"""

import yaml

CONFTEST = '''
import math
import time
from pathlib import Path

import numpy as np

from pytest_basht.trainables.base import DataInfo, Trainable


class Quadratic(Trainable):
    name = "quadratic"

    @classmethod
    def prepare(cls, workload, data_dir):
        return DataInfo(str(data_dir), 0, 0, 0, 0)

    def setup(self, workload, data, device):
        self.workload = workload

    def run_trial(self, ctx):
        x = ctx.params["x"]
        sleep = ctx.params.get("sleep", 0.02)
        with ctx.phase("trial.load"):
            pass
        if x == -1:
            raise RuntimeError("boom at x=-1")
        if x == -2:
            return float("nan")
        if x == -3:
            time.sleep(60)
        if x == -4:
            hog = np.ones(80_000_000)
            time.sleep(10)
            del hog
        epochs = self.workload.training.epochs
        value = 0.0
        for epoch in range(epochs):
            with ctx.phase("trial.train", epoch=epoch):
                time.sleep(sleep)
            with ctx.phase("trial.validate", epoch=epoch):
                value = (1 - (x - 3) ** 2 / 100) * (epoch + 1) / epochs
            ctx.report(epoch, value)
        Path(ctx.artifact).write_text(repr(value))
        return value

    def test(self, artifact):
        return float(Path(artifact).read_text())


def pytest_basht_register_trainables():
    return {"quadratic": Quadratic}
'''


def compose(base: str, extra: str) -> str:
    """``base`` then ``extra``, whose top-level sections replace those of ``base`` — what the
    workload helpers' ``extra`` means. Appending would give a key twice, which a workload
    refuses; only the sections both give are taken out of ``base``, and ``extra`` is kept
    as written (it may be invalid on purpose)."""
    try:
        over = yaml.safe_load(extra)
    except yaml.YAMLError:
        return base + extra
    given = yaml.safe_load(base)
    if not isinstance(over, dict) or not isinstance(given, dict) or not set(over) & set(given):
        return base + extra
    kept = {k: v for k, v in given.items() if k not in over}
    return yaml.safe_dump(kept, sort_keys=False, default_flow_style=None) + extra


def workload(xs: list, *, workers: int = 2, epochs: int = 2, extra: str = "") -> str:
    return compose(f"name: fake\nmodel: {{name: quadratic}}\ntraining: {{epochs: {epochs}}}\n"
                   f"search: {{space: {{x: {xs}}}}}\ngoal: {{target: 0.5}}\n"
                   f"workers: {{count: {workers}, cpu: 1, memory_mb: 1500}}\n", extra)
