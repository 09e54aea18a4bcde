"""Shared helpers for the tests: hand-built records and a tiny workload."""

from __future__ import annotations

import contextlib
import importlib
import textwrap
from pathlib import Path

import jsonschema
import pytest

from pytest_basht.records import EnergyTrace, Span, TrialRecord
from pytest_basht.report import json as report_json

# pytester forgets the modules first imported during a test; a C extension imported again
# fails ("cannot load module more than once per process"). Whatever any test may import
# in this process is imported once, here, before the first test runs.
for _name in ("numpy", "numpy.fft", "scipy.stats", "torch", "optuna", "sklearn.ensemble",
              "matplotlib", "smac", "dehb", "syne_tune"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)

# A workload small enough for end-to-end tests: 2 grid points, 1 epoch, 600 samples.
TINY = textwrap.dedent("""\
    name: tiny
    dataset: {samples: 600}
    training: {epochs: 2, batch_size: 64}
    search:
      space:
        layer_size: [16, 32]
        learning_rate: [0.01]
    goal: {metric: accuracy, direction: maximize, target: 0.5}
    workers: {count: 2, cpu: 1, memory_mb: 3000}
    """)


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def span(phase: str, start_s: float, end_s: float, *, energy: float | None = None,
         worker: int | None = None, trial: int | None = None, epoch: int | None = None,
         cpu: float = 0.0) -> Span:
    return Span(phase, int(start_s * 1e9), int(end_s * 1e9), cpu_s=cpu, worker=worker,
                trial=trial, epoch=epoch, energy_j=energy)


def trial(number: int, worker: int, start_s: float, end_s: float, *, state: str = "complete",
          value: float | None = 0.5, params: dict | None = None, energy: float = 10.0,
          intermediate: list[float] | None = None) -> TrialRecord:
    inter = intermediate if intermediate is not None else ([value] if value is not None else [])
    spans = [span("trial.validate", end_s, end_s, worker=worker, trial=number, epoch=i)
             for i in range(len(inter))]
    return TrialRecord(number=number, params=params or {"x": number}, state=state, value=value,
                       worker=worker, start_ns=int(start_s * 1e9), end_ns=int(end_s * 1e9),
                       intermediate=inter, spans=spans, cpu_s=end_s - start_s, energy_j=energy)


def flat_trace(watts: float, start_s: float, end_s: float, *, idle_w: float = 0.0,
               max_w: float = 100.0, slots: int = 1) -> EnergyTrace:
    """A timeline drawing a constant ``watts`` from start to end."""
    ts = [int(start_s * 1e9), int(end_s * 1e9)]
    return EnergyTrace(source="estimate:test", measured=False, idle_power_w=idle_w,
                       max_power_w=max_w, slots=slots,
                       timeline={"t_ns": ts, "joules": [0.0, watts * (end_s - start_s)],
                                 "cpu_s": [0.0, end_s - start_s]})


def only_report(path: Path) -> dict:
    """The one report a sub-pytest wrote under ``path/reports``, checked against the schema."""
    runs = [p for p in (path / "reports").iterdir() if p.name != "latest"]
    assert len(runs) == 1, runs
    report = report_json.load(runs[0])
    jsonschema.validate(report, report_json.schema())
    return report
