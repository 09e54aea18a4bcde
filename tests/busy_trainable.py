"""A conftest for gate tests: the fake trainable, plus ``busy``, whose trials burn CPU.

Each epoch of a ``busy`` trial busy-loops for the CPU seconds written in ``work.txt`` next
to the conftest (so a test changes the work between runs without touching the workload,
as a code change would). Under the estimate meter energy follows CPU time, so doubling the
work nearly doubles the scenario's energy.
"""

from fake_trainable import CONFTEST

BUSY_CONFTEST = CONFTEST + '''

class Busy(Quadratic):
    name = "busy"

    def run_trial(self, ctx):
        work = float((Path(__file__).parent / "work.txt").read_text())
        value = 0.0
        for epoch in range(self.workload.training.epochs):
            with ctx.phase("trial.train", epoch=epoch):
                start = time.process_time()
                while time.process_time() - start < work:
                    pass
            with ctx.phase("trial.validate", epoch=epoch):
                value = 1 - (ctx.params["x"] - 3) ** 2 / 100
            ctx.report(epoch, value)
        Path(ctx.artifact).write_text(repr(value))
        return value


def pytest_basht_register_trainables():
    return {"quadratic": Quadratic, "busy": Busy}
'''

BUSY_WORKLOAD = """\
name: busy
model: {name: busy}
training: {epochs: 1}
search: {space: {x: [1, 2]}}
goal: {target: 0.5}
workers: {count: 1, cpu: 1, memory_mb: 256}
"""

SCENARIO = """
import pytest


@pytest.mark.basht(experiment="gate")
def test_busy(trial_runner):
    assert trial_runner.run().trials
"""
