"""The trial table: one CSV row per epoch of one recorded trial, and its provenance card.

``<name>.csv`` holds the rows (columns in ``COLUMNS``); ``<name>.meta.json`` beside it (the
card) says where they come from: each source run's id, report hash, git commit, machine,
workload, energy source, idle and peak power, and its lifecycle phases' times and energies.
A table without a card still replays; its idle power is then modelled from the workload.

A row's ``time_s`` and ``energy_j`` partition the trial: epoch 0 runs from the trial's
start to its first report (loading included), each later epoch from one report to the
next, and the last row also holds the tail after the last report (saving the model), so
a trial's rows add up to its recorded wall time and energy exactly. A failed trial gets a
last row without a value for the stretch from its last report to the failure.
"""

from __future__ import annotations

import csv
import difflib
import errno
import hashlib
import io
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_basht.reading as reading
from pytest_basht.errors import BashtUsageError
from pytest_basht.simulation.curve import Curve

FORMAT = "pytest-basht trial table"
VERSION = 1
CARD_BYTES = 10_000_000  # a table card: a few lines of provenance
PARAM_PREFIX = "param."
COLUMNS: dict[str, str] = {
    "source": "the recording run: `<run id>/<test id>` (any label for tables made elsewhere)",
    "seed": "the workload seed of that run (empty: unknown)",
    "trial": "the trial's number in that run",
    "state": "how the recorded trial ended: `complete`, `pruned` or `failed`",
    "epoch": "epoch index from 0, contiguous within a trial",
    "value": "validation value reported after this epoch (empty: none reported)",
    "time_s": "wall seconds from the previous report (the trial's start for epoch 0) to "
              "this report; the last row also holds the tail after the last report",
    "energy_j": "energy attributed to the trial in that stretch (J)",
    "cpu_s": "CPU seconds of the trial in that stretch",
    "validate_s": "the part of `time_s` spent validating (0: unknown)",
    "test_value": "test-split score of this trial's model, where the run tested it",
    "param.<name>": "one column per hyperparameter, the value the trial used",
}
FIXED = tuple(c for c in COLUMNS if not c.startswith(PARAM_PREFIX))
REQUIRED = ("source", "trial", "epoch", "value", "time_s", "energy_j")
STATES = ("complete", "pruned", "failed")
MAX_BYTES = 200_000_000
LIFECYCLE = ("deploy", "setup", "result_collection", "test", "metric_collection", "undeploy")
#: What a table's recordings must share: a table describes one training setup.
SETUP_KEYS = ("model", "dataset", "training.algorithm", "training.batch_size", "goal.metric",
              "goal.direction")


class TableError(BashtUsageError):
    """A trial table that cannot be read, written or merged; the message names the file."""


# ----------------------------------------------------------------------------- values


def parse_param(cell: str) -> Any:
    """A parameter cell as the value a sampler would give: null, bool, int, float or str."""
    if cell == "":
        return None
    low = cell.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def format_param(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def canon(value: Any) -> str:
    """A matching key for one parameter value: 1, 1.0 and 1.0000000000001 are one number."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format(float(value), ".12g")
    return "s:" + str(value)


def config_key(params: dict[str, Any], names: Iterable[str]) -> tuple[str, ...]:
    return tuple(canon(params.get(n)) for n in names)


def _fmt(x: float | None) -> str:
    return "" if x is None else repr(float(x))


# ----------------------------------------------------------------------------- reading


@dataclass
class Recording:
    """One recorded trial: its configuration and its curve."""

    source: str
    seed: int | None
    trial: int
    state: str
    params: dict[str, Any]
    curve: Curve
    line: int = 0


@dataclass
class TrialTable:
    path: Path
    params: tuple[str, ...]
    recordings: list[Recording]
    meta: dict[str, Any] | None
    sha256: str
    rows: int
    by_key: dict[tuple[str, ...], list[Recording]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rec in self.recordings:
            self.by_key.setdefault(config_key(rec.params, self.params), []).append(rec)

    @classmethod
    def read(cls, path: str | Path) -> TrialTable:
        path = Path(path)
        try:
            data = reading.read_bytes(path, MAX_BYTES)
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                raise TableError(f"{path}: larger than {MAX_BYTES:,} bytes") from None
            raise TableError(f"{path}: cannot read the trial table ({exc.strerror})") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TableError(f"{path}: not UTF-8 text") from None
        params, recordings, rows = _parse(text, str(path))
        return cls(path, params, recordings, read_card(path), hashlib.sha256(data).hexdigest(),
                   rows)

    @property
    def configurations(self) -> int:
        return len(self.by_key)

    def values_of(self, name: str) -> set[str]:
        """The canonical values recorded for one hyperparameter."""
        i = self.params.index(name)
        return {key[i] for key in self.by_key}

    def describe(self) -> dict[str, Any]:
        seeds = sorted({r.seed for r in self.recordings if r.seed is not None})
        return {"path": str(self.path), "sha256": self.sha256, "rows": self.rows,
                "recordings": len(self.recordings), "configurations": self.configurations,
                "params": list(self.params), "seeds": seeds,
                "epochs": max((r.curve.epochs for r in self.recordings), default=0),
                "sources": sorted({r.source for r in self.recordings}),
                "card": self.meta is not None}


def card_path(path: Path) -> Path:
    return path.with_name(path.stem + ".meta.json")


def read_card(path: Path) -> dict[str, Any] | None:
    card = card_path(path)
    if not card.exists():
        return None
    try:
        meta = json.loads(reading.read_text(card, CARD_BYTES))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TableError(f"{card}: not a readable table card ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TableError(f"{card}: not a {FORMAT} card (no format: {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise TableError(f"{card}: card version {meta.get('version')!r}, this pytest-basht "
                         f"reads version {VERSION}")
    return meta


def _number(cell: str, where: str, col: str, *, empty: bool = False,
            minimum: float | None = None) -> float | None:
    if cell == "":
        if empty:
            return None
        raise TableError(f"{where}: column {col}: expected a number, got an empty cell")
    try:
        x = float(cell)
    except ValueError:
        raise TableError(f"{where}: column {col}: expected a number, got {cell!r}") from None
    if col != "value" and not math.isfinite(x):
        raise TableError(f"{where}: column {col}: expected a finite number, got {cell!r}")
    if minimum is not None and x < minimum:
        raise TableError(f"{where}: column {col}: expected a number ≥ {minimum:g}, got {cell!r}")
    return x if math.isfinite(x) else None


def _integer(cell: str, where: str, col: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise TableError(f"{where}: column {col}: expected an integer, got {cell!r}") from None


def _parse(text: str, label: str) -> tuple[tuple[str, ...], list[Recording], int]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise TableError(f"{label}: empty file; a trial table starts with a header row "
                         f"({', '.join(REQUIRED)}, param.<name>...)") from None
    except csv.Error as exc:
        raise TableError(f"{label}: line 1: not CSV ({exc})") from None
    header = [h.strip() for h in header]
    for col in header:
        if col not in FIXED and not col.startswith(PARAM_PREFIX):
            close = difflib.get_close_matches(col, FIXED, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TableError(f"{label}: line 1: unknown column {col!r}{hint}; columns are "
                             f"{', '.join(FIXED)} and param.<name>")
    if len(set(header)) != len(header):
        raise TableError(f"{label}: line 1: a column appears twice")
    missing = [c for c in REQUIRED if c not in header]
    params = tuple(h[len(PARAM_PREFIX):] for h in header if h.startswith(PARAM_PREFIX))
    if missing:
        raise TableError(f"{label}: line 1: missing column(s) {', '.join(missing)}")
    if not params or not all(params):
        raise TableError(f"{label}: line 1: no hyperparameter columns (param.<name>)")
    col = {h: i for i, h in enumerate(header)}
    groups: dict[tuple[str, int], list[tuple[int, list[str]]]] = {}
    rows = 0
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise TableError(f"{label}: line {line}: {len(row)} cells, the header has "
                                 f"{len(header)}")
            rows += 1
            where = f"{label}: line {line}"
            key = (row[col["source"]], _integer(row[col["trial"]], where, "trial"))
            groups.setdefault(key, []).append((line, row))
    except csv.Error as exc:
        raise TableError(f"{label}: line {reader.line_num}: not CSV ({exc})") from None
    if not groups:
        raise TableError(f"{label}: no rows")
    recordings = [_recording(source, trial, lines, col, params, label)
                  for (source, trial), lines in groups.items()]
    return params, recordings, rows


def _recording(source: str, trial: int, lines: list[tuple[int, list[str]]],
               col: dict[str, int], params: tuple[str, ...], label: str) -> Recording:
    first = lines[0][0]
    what = f"{label}: line {first}: trial {trial} of {source!r}"

    def cell(row: list[str], name: str) -> str:
        return row[col[name]].strip() if name in col else ""

    by_epoch: dict[int, tuple[int, list[str]]] = {}
    for line, row in lines:
        epoch = _integer(cell(row, "epoch"), f"{label}: line {line}", "epoch")
        if epoch in by_epoch:
            raise TableError(f"{label}: line {line}: epoch {epoch} of trial {trial} of "
                             f"{source!r} appears twice (also line {by_epoch[epoch][0]})")
        by_epoch[epoch] = (line, row)
    if sorted(by_epoch) != list(range(len(by_epoch))):
        raise TableError(f"{what}: epochs {sorted(by_epoch)}; expected 0..{len(by_epoch) - 1}")
    ordered = [by_epoch[e] for e in range(len(by_epoch))]
    head = ordered[0][1]
    shared = {name: cell(head, name) for name in ("seed", "state", "test_value")}
    raw_params = {p: head[col[PARAM_PREFIX + p]].strip() for p in params}
    values: list[float | None] = []
    times: list[int] = []
    energies: list[float] = []
    cpus: list[float] = []
    validates: list[int] = []
    for line, row in ordered:
        where = f"{label}: line {line}"
        for name, expected in shared.items():
            if cell(row, name) != expected:
                raise TableError(f"{where}: column {name}: {cell(row, name)!r} differs from "
                                 f"{expected!r} on line {first} (same trial)")
        for p, expected in raw_params.items():
            if row[col[PARAM_PREFIX + p]].strip() != expected:
                raise TableError(f"{where}: column param.{p}: differs from line {first} "
                                 "(same trial)")
        values.append(_number(cell(row, "value"), where, "value", empty=True))
        t = _number(cell(row, "time_s"), where, "time_s", minimum=0)
        times.append(round((t or 0.0) * 1e9))
        energies.append(_number(cell(row, "energy_j"), where, "energy_j", minimum=0) or 0.0)
        cpus.append(_number(cell(row, "cpu_s"), where, "cpu_s", empty=True, minimum=0) or 0.0)
        v = _number(cell(row, "validate_s"), where, "validate_s", empty=True, minimum=0) or 0.0
        validates.append(min(round(v * 1e9), times[-1]))
    state = shared["state"] or "complete"
    if state not in STATES:
        raise TableError(f"{what}: column state: expected one of {', '.join(STATES)}, "
                         f"got {state!r}")
    seed = _integer(shared["seed"], what, "seed") if shared["seed"] else None
    test_value = _number(shared["test_value"], what, "test_value", empty=True)
    curve = Curve(tuple(values), tuple(times), tuple(energies), tuple(cpus), tuple(validates),
                  {"complete": "complete", "failed": "failed", "pruned": "truncated"}[state],
                  f"recorded failure ({source}, trial {trial})" if state == "failed" else None,
                  "table", test_value)
    return Recording(source, seed, trial, state, {p: parse_param(v) for p, v in
                                                  raw_params.items()}, curve, first)


# ----------------------------------------------------------------------------- export


def _epoch_rows(trial: dict[str, Any]) -> list[dict[str, Any]]:
    """Split one trial of a report into epoch rows that add up to the whole trial."""
    start, end = int(trial["start_ns"]), int(trial["end_ns"])
    end = max(end, start)
    reported = list(trial.get("intermediate") or [])
    spans = trial.get("spans") or []
    last_end: dict[int, int] = {}
    validate: dict[int, int] = {}
    for s in spans:
        e = s.get("epoch")
        if e is None:
            continue
        last_end[e] = max(last_end.get(e, s["end_ns"]), s["end_ns"])
        if s["phase"] == "trial.validate":
            validate[e] = validate.get(e, 0) + max(0, s["end_ns"] - s["start_ns"])
    n = len(reported)
    bounds: list[int] = []
    for k in range(n):
        b = last_end.get(k, start + (end - start) * (k + 1) // n)
        bounds.append(min(max(b, bounds[-1] if bounds else start), end))
    failed = trial["state"] == "failed"
    if n == 0:
        edges, values = [start, end], [None]
    elif failed:
        edges, values = [start, *bounds, end], [*reported, None]
    else:
        edges, values = [start, *bounds[:-1], end], reported
    rows = len(values)
    weights_j = [0.0] * rows
    weights_cpu = [0.0] * rows
    for s in spans:
        r = next((i for i in range(rows) if s["end_ns"] <= edges[i + 1]), rows - 1)
        weights_j[r] += s.get("energy_j") or 0.0
        weights_cpu[r] += s.get("cpu_s") or 0.0
    times = [edges[i + 1] - edges[i] for i in range(rows)]
    energy = _share(trial.get("energy_j") or 0.0, weights_j, times)
    cpu = _share(trial.get("cpu_s") or 0.0, weights_cpu, times)
    return [{"epoch": i, "value": values[i], "time_s": times[i] / 1e9, "energy_j": energy[i],
             "cpu_s": cpu[i], "validate_s": min(validate.get(i, 0), times[i]) / 1e9
             if values[i] is not None else 0.0} for i in range(rows)]


def _share(total: float, weights: list[float], times: list[int]) -> list[float]:
    """Split ``total`` in proportion to ``weights`` (else to ``times``, else evenly)."""
    for basis in (weights, [float(t) for t in times]):
        s = sum(basis)
        if s > 0:
            return [total * w / s for w in basis]
    return [total / len(weights)] * len(weights)


def _lifecycle(spans: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in spans:
        if s.get("trial") is not None or s["phase"] not in LIFECYCLE:
            continue
        a = out.setdefault(s["phase"], {"time_s": 0.0, "energy_j": 0.0, "cpu_s": 0.0})
        a["time_s"] += max(0, s["end_ns"] - s["start_ns"]) / 1e9
        a["energy_j"] += s.get("energy_j") or 0.0
        a["cpu_s"] += s.get("cpu_s") or 0.0
    return out


def _handoff_s(trials: list[dict[str, Any]]) -> float | None:
    """Mean gap between a worker's consecutive trials: sampler, storage and messaging."""
    by_worker: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        by_worker.setdefault(t["worker"], []).append(t)
    gaps = []
    for ts in by_worker.values():
        ts.sort(key=lambda t: t["start_ns"])
        gaps += [max(0, b["start_ns"] - a["end_ns"]) / 1e9 for a, b in itertools.pairwise(ts)]
    return sum(gaps) / len(gaps) if gaps else None


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else {}
    return data


@dataclass
class Export:
    """Rows and card entries gathered from reports and tables, ready to write as one table."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _params(self, names: list[str], label: str) -> None:
        if not self.params:
            self.params = list(names)
        elif set(names) != set(self.params):
            raise TableError(f"{label}: hyperparameters {sorted(names)} differ from "
                             f"{sorted(self.params)} of the other inputs; a table holds one "
                             "search space's names")

    def _setup(self, entry: dict[str, Any], label: str) -> None:
        if not self.sources:
            return
        first = self.sources[0]
        for key in SETUP_KEYS:
            a, b = _dig(first.get("workload", {}), key), _dig(entry.get("workload", {}), key)
            if a and b and a != b:
                raise TableError(f"{label}: {key} is {json.dumps(b)} but "
                                 f"{json.dumps(a)} in {first['source']}; a table holds one "
                                 "training setup")

    def add_report(self, report: dict[str, Any], path: str, sha256: str) -> None:
        run_id = report.get("run_id", "run")
        for sc in report.get("scenarios", []):
            label = f"{path}: scenario {sc['test_id']}"
            if (sc.get("sut") or {}).get("simulated"):
                self.notes.append(f"{label}: skipped (a simulated run, not a recording)")
                continue
            trials = sc.get("trials") or []
            if not trials:
                self.notes.append(f"{label}: skipped (no trials)")
                continue
            workload = sc.get("workload") or {}
            source = f"{run_id}/{sc['test_id']}"
            if any(s["source"] == source for s in self.sources):
                raise TableError(f"{label}: source {source} is given twice")
            names = list((workload.get("search") or {}).get("space") or trials[0]["params"])
            energy = sc.get("energy") or {}
            entry = {
                "source": source, "run_id": run_id, "test_id": sc["test_id"], "report": path,
                "report_sha256": sha256, "created_utc": report.get("created_utc"),
                "git": report.get("git"), "machine": {k: (report.get("machine") or {}).get(k)
                                                      for k in ("id", "cpu_model", "cores",
                                                                "memory_gb")},
                "seed": workload.get("seed"), "workload": {
                    k: workload.get(k) for k in ("name", "experiment", "model", "dataset",
                                                 "training", "goal", "workers", "search")},
                "energy": {k: energy.get(k) for k in ("source", "measured", "idle_power_w",
                                                      "max_power_w", "slots", "idle_measured")},
                "lifecycle": _lifecycle(sc.get("spans") or []), "handoff_s": _handoff_s(trials),
                "trials": len(trials),
                "best_trial": sc.get("best_trial"), "test_score": sc.get("test_score"),
            }
            self._params(names, label)
            self._setup(entry, label)
            self.sources.append(entry)
            for t in trials:
                tested = sc.get("test_score") if t["number"] == sc.get("best_trial") else None
                shared = {"source": source, "seed": workload.get("seed"), "trial": t["number"],
                          "state": t["state"], "test_value": tested,
                          **{PARAM_PREFIX + p: t["params"].get(p) for p in names}}
                self.rows.extend({**shared, **r} for r in _epoch_rows(t))

    def add_table(self, table: TrialTable) -> None:
        label = str(table.path)
        self._params(list(table.params), label)
        cards = (table.meta or {}).get("sources") or [{"source": s} for s in
                                                       sorted({r.source for r in
                                                               table.recordings})]
        for entry in cards:
            if any(s["source"] == entry["source"] for s in self.sources):
                raise TableError(f"{label}: source {entry['source']} is given twice")
            self._setup(entry, label)
            self.sources.append(entry)
        for rec in table.recordings:
            c = rec.curve
            shared = {"source": rec.source, "seed": rec.seed, "trial": rec.trial,
                      "state": rec.state, "test_value": c.test_value,
                      **{PARAM_PREFIX + p: rec.params.get(p) for p in table.params}}
            for i in range(c.epochs):
                self.rows.append({**shared, "epoch": i, "value": c.values[i],
                                  "time_s": c.times_ns[i] / 1e9, "energy_j": c.energies_j[i],
                                  "cpu_s": c.cpu_s[i], "validate_s": c.validate_ns[i] / 1e9})

    def csv_text(self) -> str:
        if not self.rows:
            raise TableError("nothing to export: no trials in the inputs")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        fixed = list(FIXED)
        writer.writerow(fixed + [PARAM_PREFIX + p for p in self.params])
        for r in self.rows:
            cells = []
            for c in fixed:
                v = r.get(c)
                if c in ("value", "time_s", "energy_j", "cpu_s", "validate_s", "test_value"):
                    cells.append(_fmt(v))
                else:
                    cells.append("" if v is None else str(v))
            cells += [format_param(r.get(PARAM_PREFIX + p)) for p in self.params]
            writer.writerow(cells)
        return out.getvalue()

    def card(self, created_utc: str, created_by: str) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created_utc": created_utc,
                "created_by": created_by, "columns": COLUMNS, "params": self.params,
                "sources": self.sources}


# ----------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class CardSummary:
    """What a replay takes from a card: energy source, power per slot, lifecycle means."""

    source: str
    measured: bool
    idle_measured: bool
    idle_w_per_slot: float
    max_w_per_slot: float
    lifecycle: dict[str, dict[str, float]]
    handoff_s: float | None
    workers: dict[str, Any]
    setup: dict[str, Any]


def summarize(meta: dict[str, Any], seed: int | None = None) -> CardSummary | None:
    """The card's figures: the mean over the sources recorded with ``seed`` if any (as
    ``pick`` answers from them), else over all sources."""
    sources = [s for s in meta.get("sources", []) if s.get("energy")]
    sources = [s for s in sources if seed is not None and s.get("seed") == seed] or sources
    if not sources:
        return None
    idle, peak, names = [], [], []
    phases: dict[str, list[dict[str, float]]] = {}
    for s in sources:
        e = s["energy"]
        slots = max(1, int(e.get("slots") or 1))
        idle.append(float(e.get("idle_power_w") or 0.0) / slots)
        peak.append(float(e.get("max_power_w") or 0.0) / slots)
        if e.get("source") and e["source"] not in names:
            names.append(e["source"])
        for phase, figures in (s.get("lifecycle") or {}).items():
            phases.setdefault(phase, []).append(figures)
    lifecycle = {p: {k: sum(f.get(k, 0.0) for f in fs) / len(fs)
                     for k in ("time_s", "energy_j", "cpu_s")} for p, fs in phases.items()}
    handoffs = [s["handoff_s"] for s in sources if s.get("handoff_s") is not None]
    first = sources[0].get("workload") or {}
    return CardSummary(
        source="+".join(names) or "unknown",
        measured=all(bool(s["energy"].get("measured")) for s in sources),
        idle_measured=all(bool(s["energy"].get("idle_measured")) for s in sources),
        idle_w_per_slot=sum(idle) / len(idle), max_w_per_slot=sum(peak) / len(peak),
        lifecycle=lifecycle, handoff_s=sum(handoffs) / len(handoffs) if handoffs else None,
        workers=dict(first.get("workers") or {}),
        setup={k: _dig(first, k) for k in SETUP_KEYS})
