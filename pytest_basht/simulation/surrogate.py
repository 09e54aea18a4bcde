"""A surrogate for configurations a table lacks: a random forest over (params, epoch).

scikit-learn's ``RandomForestRegressor`` (multi-output) learns, from every epoch row of
the table's complete recordings, the validation value, log time, log energy and CPU
seconds of an epoch. A forest averages recorded rows, so it never predicts outside the
recorded range — a pessimistic but honest choice for a benchmark. Before the final fit,
a fifth of the configurations (at least one) are held out, and the forest fitted on the
rest is scored on their rows: R² and mean absolute error per target, in the report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pytest_basht.simulation.curve import Curve
from pytest_basht.simulation.table import TrialTable, config_key
from pytest_basht.workload import Workload

NAME = "random-forest"
TREES = 200
HOLDOUT = 0.2
TARGETS = ("value", "time_s", "energy_j", "cpu_s")


class Surrogate:
    def __init__(self, table: TrialTable, workload: Workload) -> None:
        self.table = table
        self.epochs = workload.training.epochs
        self.seed = workload.seed
        self.names = table.params
        dims = {d.name: d for d in workload.search.space}
        self.log = [bool(dims[n].log) if n in dims else False for n in self.names]
        self.codes: list[dict[str, int]] = []
        for n in self.names:
            text = sorted({str(r.params[n]) for r in table.recordings
                           if not _is_number(r.params[n])})
            self.codes.append({s: i for i, s in enumerate(text)})
        x, y, groups = self._rows()
        if len(x) == 0:
            raise ValueError(f"table {table.path} has no complete recording to fit on")
        self.holdout = self._holdout(x, y, groups)
        self.model = self._fit(x, y)
        self.fitted = {"configurations": len(set(groups)), "rows": len(x)}

    def _features(self, params: dict[str, Any], epoch: int) -> list[float]:
        out: list[float] = []
        for i, n in enumerate(self.names):
            v = params.get(n)
            if _is_number(v):
                x = float(v)
                out.append(math.log10(x) if self.log[i] and x > 0 else x)
            else:
                out.append(float(self.codes[i].get(str(v), -1)))
        out.append(float(epoch))
        return out

    def _rows(self) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
        x, y, groups = [], [], []
        for r in self.table.recordings:
            c = r.curve
            if c.state != "complete":
                continue
            key = config_key(r.params, self.names)
            for i in range(c.epochs):
                if c.values[i] is None:
                    continue
                x.append(self._features(r.params, i))
                y.append([c.values[i], math.log(max(c.times_ns[i], 1) / 1e9),
                          math.log(max(c.energies_j[i], 1e-12)), c.cpu_s[i]])
                groups.append(key)
        return np.asarray(x, float), np.asarray(y, float), groups

    def _fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(n_estimators=TREES, random_state=self.seed, n_jobs=1)
        model.fit(x, y)
        return model

    def _holdout(self, x: np.ndarray, y: np.ndarray,
                 groups: list[tuple[str, ...]]) -> dict[str, Any] | None:
        from sklearn.metrics import mean_absolute_error, r2_score

        keys = sorted(set(groups))
        if len(keys) < 5:
            return None
        rng = np.random.default_rng(self.seed)
        held = {keys[i] for i in rng.permutation(len(keys))[:max(1, round(len(keys) * HOLDOUT))]}
        test = np.array([g in held for g in groups])
        model = self._fit(x[~test], y[~test])
        pred = model.predict(x[test])
        truth = y[test]
        out: dict[str, Any] = {"configurations": len(held), "rows": int(test.sum())}
        for j, name in enumerate(TARGETS):
            a, b = truth[:, j], pred[:, j]
            if name in ("time_s", "energy_j"):
                a, b = np.exp(a), np.exp(b)
            out[name] = {"r2": float(r2_score(a, b)), "mae": float(mean_absolute_error(a, b))}
        return out

    def curve(self, params: dict[str, Any]) -> Curve:
        x = np.asarray([self._features(params, i) for i in range(self.epochs)], float)
        p = self.model.predict(x)
        times = tuple(round(math.exp(row[1]) * 1e9) for row in p)
        return Curve(tuple(float(row[0]) for row in p), times,
                     tuple(float(math.exp(row[2])) for row in p),
                     tuple(max(0.0, float(row[3])) for row in p), (0,) * self.epochs,
                     "complete", None, "surrogate", None)

    def describe(self) -> dict[str, Any]:
        return {"model": f"{NAME}: scikit-learn RandomForestRegressor ({TREES} trees, "
                         f"random_state={self.seed}) over (params, epoch) → (value, log time, "
                         "log energy, CPU s)",
                "fitted_on": self.fitted, "holdout": self.holdout}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
