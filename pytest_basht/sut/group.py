"""Grouped trials in a worker: ask in groups, train those of one shape together, tell each.

With ``search.fusion`` or ``search.scaling`` set, a worker's share of the search runs
here, on a trainable that trains groups (``trainables.group.FusableTrainable``; Hydro's
fused nets are one): ``GroupRunner`` asks the shared study for up to ``search.fusion``
trials at a time, groups them by the trainable's ``group_key`` and trains each group with
``run_group`` (at width / ``search.scaling``). Each member is told back to the study, and
streamed to the controller as its own TrialRecord, the moment it stops: a pruned or
diverged member leaves the group and the others go on.

Attribution of a group's work to its members: every phase of the group (load, each
epoch's train and validate) becomes one span per member that was live when it began, with
the group's real start and end and an equal share of its CPU time; CPU used between phases
(reporting, telling, saving) is shared the same way. A member's TrialRecord runs from the
group's start to its own stop, with the sum of its shares as CPU time. The runner then
splits each worker slot's idle power among the trials running on it at once
(``energy.sharing``), so members' energies add up to the group's.

``retrain`` trains given configurations at full width, fused where they share a shape:
the ``Retrain`` request, by which a plugin's test phase retrains configurations on the
workers (Hydro's, a surrogate's best). ``check`` refuses, at a scenario's setup, a
trainable that cannot train groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_basht.lifecycle import Recorder, process_clock, recording
from pytest_basht.records import Span, TrialRecord, bounded_traceback, utc_now
from pytest_basht.sut import protocol
from pytest_basht.sut.base import SutError
from pytest_basht.trainables.base import TrialContext, TrialPruned, config_seed
from pytest_basht.trainables.group import FusableTrainable, GroupContext
from pytest_basht.workload import Workload

Send = Callable[[protocol.Event], None]


def check(trainable: Any, workload: Workload) -> None:
    """Fusion and scaling need a trainable that trains groups."""
    if workload.search.grouped and not all(callable(getattr(trainable, name, None))
                                           for name in ("group_key", "run_group")):
        raise SutError(f"{workload.source}: search.fusion / search.scaling need a trainable "
                       f"that trains groups of trials (a FusableTrainable: group_key and "
                       f"run_group); model {workload.model.name!r} has none")


@dataclass(eq=False)
class Member(TrialContext):
    """One trial of a group: its context for the trainable and what it has cost so far."""

    number: int
    params: dict[str, Any]
    workload: Workload
    seed: int
    artifact: Path
    trial: Any = None  # the optuna trial; None when retraining outside the study
    group: _Group | None = None
    index: int = 0
    start_ns: int = 0
    end_ns: int = 0
    cpu_s: float = 0.0
    state: str = "running"
    value: float = math.nan
    error: str | None = None
    traceback: str | None = None  # the group's, when run_group raised
    intermediate: list[float] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)

    def phase(self, name: str, *, epoch: int | None = None) -> Any:
        assert self.group is not None
        return self.group.phase(name, epoch=epoch, only=self.index)

    def report(self, epoch: int, value: float) -> None:
        assert self.group is not None
        if not self.group.report(self.index, epoch, value):
            raise TrialPruned(f"pruned after epoch {epoch}")

    def record(self, worker: int) -> TrialRecord:
        return TrialRecord(number=self.number, params=self.params, state=self.state,
                           value=self.value if math.isfinite(self.value) else None,
                           worker=worker, start_ns=self.start_ns, end_ns=self.end_ns,
                           intermediate=list(self.intermediate), spans=list(self.spans),
                           cpu_s=self.cpu_s, error=self.error, traceback=self.traceback)


class _Group(GroupContext):
    """The worker's GroupContext: shares time and CPU among the live members."""

    def __init__(self, members: list[Member], workload: Workload, scaling: int, worker: int,
                 send: Send | None, on_stop: Callable[[Member], None]) -> None:
        self.members = members
        self.workload = workload
        self.scaling = scaling
        self.worker = worker
        self.send = send
        self.on_stop = on_stop
        self.live = [True] * len(members)
        self.broken: BaseException | None = None  # on_stop failed: the harness, not a trial
        self._depth = 0  # phases open: their CPU is shared when they end
        self.start_ns, self._cpu = process_clock()
        self.start_utc = utc_now()
        for i, m in enumerate(members):
            m.group, m.index, m.start_ns = self, i, self.start_ns

    def _charge(self) -> int:
        """Share the CPU used since the last charge among the live members; return now.

        Inside a phase nothing is charged: the outermost phase shares its CPU when it ends.
        """
        now, cpu = process_clock()
        if self._depth:
            return now
        live = [m for m, ok in zip(self.members, self.live, strict=True) if ok]
        for m in live:
            m.cpu_s += max(0.0, cpu - self._cpu) / len(live)
        self._cpu = cpu
        return now

    @contextmanager
    def phase(self, name: str, *, epoch: int | None = None,
              only: int | None = None) -> Iterator[Span]:
        self._charge()
        charged = [i for i, ok in enumerate(self.live) if ok and only in (None, i)]
        recorder = Recorder(worker=self.worker)
        self._depth += 1
        try:
            with recorder.span(name, epoch=epoch) as span:
                yield span
        finally:
            self._depth -= 1
            self._share(recorder.take()[0], charged)

    def _share(self, whole: Span, charged: list[int]) -> None:
        """One span per charged member: the group's interval, an equal share of its CPU."""
        outermost = self._depth == 0
        if outermost:
            self._cpu += whole.cpu_s
        for i in charged:
            member = self.members[i]
            share = whole.cpu_s / len(charged)
            if outermost:
                member.cpu_s += share
            span = replace(whole, trial=member.number, cpu_s=share)
            member.spans.append(span)
            if self.send is not None:
                self.send(protocol.SpanRecorded(span.to_dict()))

    def report(self, index: int, epoch: int, value: float) -> bool:
        member = self.members[index]
        value = float(value)
        member.intermediate.append(value)
        if self.send is not None:
            self.send(protocol.Reported(member.number, epoch, value))
        if member.trial is None or not math.isfinite(value):
            return True
        member.trial.report(value, epoch)
        if member.trial.should_prune():
            self._stop(index, "pruned", value, None)
            return False
        return True

    def fail(self, index: int, error: str) -> None:
        if self.live[index]:
            self._stop(index, "failed", math.nan, error)

    def _stop(self, index: int, state: str, value: float, error: str | None) -> None:
        member = self.members[index]
        member.end_ns = self._charge()  # inside a phase, it gets its share when that ends
        self.live[index] = False
        member.state, member.value, member.error = state, value, error
        try:
            self.on_stop(member)
        except Exception as exc:
            self.broken = self.broken or exc

    def finish(self, values: dict[int, float], error: str | None = None,
               traceback: str | None = None) -> None:
        """End the group: members still live complete with their value, or fail."""
        for i, ok in enumerate(self.live):
            if not ok:
                continue
            value = float(values.get(i, math.nan))
            if error is not None:
                self.members[i].traceback = traceback
                self._stop(i, "failed", math.nan, error)
            elif i not in values:
                self._stop(i, "failed", math.nan, "run_group returned no value for it")
            elif not math.isfinite(value):
                self._stop(i, "failed", math.nan, f"objective returned {value}")
            else:
                self._stop(i, "complete", value, None)


class _GroupRecorder(Recorder):
    """Makes ``pytest_basht.phase()`` inside ``run_group`` a phase of the whole group."""

    def __init__(self, group: _Group) -> None:
        super().__init__(worker=group.worker)
        self.group = group

    def span(self, name: Any, *, epoch: int | None = None) -> Any:
        return self.group.phase(str(name), epoch=epoch)


def train_group(trainable: FusableTrainable, members: list[Member], workload: Workload,
                scaling: int, worker: int, send: Send | None,
                on_stop: Callable[[Member], None]) -> dict[str, Any]:
    """Train ``members`` as one group; every member ends stopped. Returns the group's facts."""
    group = _Group(members, workload, scaling, worker, send, on_stop)
    try:
        with recording(_GroupRecorder(group)):
            values = trainable.run_group(group)
        group.finish(values)
    except Exception as exc:
        group.finish({}, error=f"{type(exc).__name__}: {exc}",
                     traceback=bounded_traceback(exc))
    if group.broken is not None:
        raise group.broken
    end_ns, _ = process_clock()
    return {"worker": worker, "trials": [m.number for m in members], "size": len(members),
            "scaling": scaling, "start_ns": group.start_ns, "end_ns": end_ns,
            "cpu_s": round(sum(m.cpu_s for m in members), 6), "start_utc": group.start_utc}


def by_key(trainable: FusableTrainable, workload: Workload, configs: list[Any],
           params_of: Callable[[Any], dict[str, Any]], fusion: int) -> list[list[Any]]:
    """Configurations grouped by shape (first-seen order), at most ``fusion`` per group."""
    groups: dict[str, list[list[Any]]] = {}
    for config in configs:
        chunks = groups.setdefault(trainable.group_key(workload, params_of(config)), [[]])
        if len(chunks[-1]) >= fusion:
            chunks.append([])
        chunks[-1].append(config)
    return [chunk for chunks in groups.values() for chunk in chunks]


def tell(study: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
    """``study.tell`` outside ``optimize()``.

    GridSampler.after_trial calls ``Study.stop()`` once the grid is done, which works only
    inside ``optimize()``; ``tell`` has stored the trial's result before that.
    """
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


class GroupRunner:
    """A worker's share of the search, in groups of up to ``search.fusion`` trials."""

    def __init__(self, *, trainable: FusableTrainable, workload: Workload, study: Any,
                 cap: int | None, artifacts: Path, worker: int, send: Send,
                 refused: Callable[[Any], bool] | None = None) -> None:
        import optuna

        self.refused = refused
        self.trainable = trainable
        self.workload = workload
        self.study = study
        self.artifacts = artifacts
        self.worker = worker
        self.send = send
        self.discarded = 0
        self.cap = cap if cap is not None else workload.trial_budget
        if isinstance(study.sampler, optuna.samplers.GridSampler) and workload.search.size:
            # Optuna gives trial numbers below the grid's size distinct grid points: asking
            # no further runs each point exactly once, with no repeats at the tail.
            self.cap = min(self.cap, workload.search.size)

    def run(self) -> int:
        """Ask, fuse, train and tell until the budget is spent; returns trials discarded."""
        fusion = self.workload.search.fusion
        while True:
            asked = self._ask(fusion)
            for chunk in by_key(self.trainable, self.workload, asked, lambda a: a[1], fusion):
                self._train(chunk)
            if len(asked) < fusion:
                return self.discarded

    def _ask(self, count: int) -> list[tuple[Any, dict[str, Any]]]:
        import optuna

        from pytest_basht.search import suggest

        asked: list[tuple[Any, dict[str, Any]]] = []
        while len(asked) < count:
            if len(self.study.get_trials(deepcopy=False)) >= self.cap:
                break
            trial = self.study.ask()
            # past the cap: another worker was faster; refused: the workload's budget
            if trial.number >= self.cap or (self.refused is not None and self.refused(trial)):
                tell(self.study, trial, state=optuna.trial.TrialState.FAIL)
                self.discarded += 1
                break
            asked.append((trial, suggest(trial, self.workload.search.space)))
        return asked

    def _train(self, chunk: list[tuple[Any, dict[str, Any]]]) -> None:
        import optuna

        workload = self.workload
        members = [Member(trial.number, params, workload, config_seed(workload.seed, params),
                          self.artifacts / f"trial-{trial.number}.pt", trial)
                   for trial, params in chunk]
        start_ns, _ = process_clock()
        for m in members:
            self.send(protocol.TrialStarted(m.number, m.params, start_ns))

        def on_stop(m: Member) -> None:
            states = optuna.trial.TrialState
            self.send(protocol.TrialFinished(m.record(self.worker).to_dict()))
            if m.state == "complete":
                tell(self.study, m.trial, m.value)
            else:
                tell(self.study, m.trial,
                     state=states.PRUNED if m.state == "pruned" else states.FAIL)

        facts = train_group(self.trainable, members, workload, workload.search.scaling,
                            self.worker, self.send, on_stop)
        self.send(protocol.GroupTrained(facts))


def retrain(trainable: FusableTrainable, workload: Workload, configs: list[dict[str, Any]],
            artifacts: Path, worker: int) -> list[dict[str, Any]]:
    """Train each ``{number, params}`` at full width (fused by shape); one result each."""
    full = replace(workload, search=replace(workload.search, scaling=1))
    results: list[dict[str, Any]] = []

    def on_stop(m: Member) -> None:
        results.append({"number": m.number, "params": m.params, "state": m.state,
                        "value": m.value if math.isfinite(m.value) else None,
                        "intermediate": list(m.intermediate), "error": m.error,
                        "artifact": str(m.artifact), "worker": worker,
                        "time_s": (m.end_ns - m.start_ns) / 1e9, "cpu_s": m.cpu_s})

    for chunk in by_key(trainable, full, configs, lambda c: c["params"],
                        workload.search.fusion):
        members = [Member(c["number"], c["params"], full, config_seed(workload.seed, c["params"]),
                          artifacts / f"full-{c['number']}.pt") for c in chunk]
        train_group(trainable, members, full, 1, worker, None, on_stop)
    return results
