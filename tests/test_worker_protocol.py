"""The worker protocol (``sut.protocol``): every message crosses a socket (pickled) intact,
and a worker answers a request it does not know with an error event and serves on."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from pathlib import Path
from typing import Any

import pytest

from pytest_basht import workload as wl
from pytest_basht.sut import protocol
from pytest_basht.sut.worker import Worker
from pytest_basht.trainables.base import DataInfo

WORKLOAD = wl.from_mapping({})
SPAN = {"phase": "trial.train", "start_ns": 1, "end_ns": 2, "start_utc": "", "end_utc": "",
        "cpu_s": 0.5, "worker": 0, "trial": 3, "epoch": 0, "energy_j": None}

MESSAGES: list[Any] = [
    protocol.Preload("pytest_basht.hydro.fused:FusedMnistFF"),
    protocol.Setup(WORKLOAD, "pytest_basht.hydro.fused:FusedMnistFF",
                   DataInfo(path="/data", train=60, validation=20, test=20, bytes=1000), "cpu"),
    protocol.Run(study="s-1", sampler="pytest_basht.search:grid_sampler",
                 pruner="pytest_basht.search:median_pruner", seed=1, cap=None, artifacts="/a",
                 journal="/j.log"),
    protocol.Run(study="s.1", sampler="x:y", pruner="x:z", seed=2, cap=8, artifacts="/a",
                 storage="sqlite:///s.db",
                 heartbeat={"heartbeat_s": 5, "grace_s": 15, "retries": 0}),
    protocol.Run(study="s-2", sampler="x:y", pruner="x:z", seed=3, cap=None, artifacts="/a",
                 journal="/j.log", limits={"time_s": 60.0}, started_s=1.7e9),
    protocol.Evaluate(number=4, params={"x": 1}, epochs=3, artifacts="/a"),
    protocol.Evaluate(number=5, params={"x": 1}, epochs=9, artifacts="/a", start_epoch=3,
                      resume="/c/trial-4.ckpt", checkpoint="/c/trial-5.ckpt", judged=True),
    protocol.Proceed(5, False),
    protocol.Test("/a/trial-3.pt"),
    protocol.Retrain([{"number": 3, "params": {"x": 1}}], "/a"),
    protocol.Stop(),
    protocol.Hello(0, 1234, [0, 1]),
    protocol.Preloaded(),
    protocol.Ready(),
    protocol.TrialStarted(3, {"x": 1}, 100),
    protocol.SpanRecorded(SPAN),
    protocol.Reported(3, 0, 0.5, 200),
    protocol.Reported(3, 1, 0.25),
    protocol.GroupTrained({"worker": 0, "trials": [3, 4], "size": 2}),
    protocol.TrialFinished({"number": 3, "params": {"x": 1}, "state": "complete",
                            "value": 0.5, "worker": 0, "start_ns": 1, "end_ns": 2,
                            "spans": [SPAN]}),
    protocol.Evaluated({"number": 5, "params": {"x": 1}, "state": "pruned", "value": 0.4,
                        "worker": 0, "start_ns": 1, "end_ns": 2, "spans": [SPAN],
                        "fidelity": 9, "resumed_from": 3}),
    protocol.RunDone(2),
    protocol.TestDone(0.97),
    protocol.Retrained([{"number": 3, "value": 0.9}]),
    protocol.Error("setup", "ValueError: no data", "Traceback ..."),
]


def test_every_message_kind_is_covered():
    declared = {obj for obj in vars(protocol).values() if isinstance(obj, type)
                and dataclasses.is_dataclass(obj) and obj.__module__ == protocol.__name__}
    assert {type(m) for m in MESSAGES} == declared
    assert set(typing.get_args(protocol.Request)) | set(typing.get_args(protocol.Event)) \
        == declared


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_a_message_survives_a_pickle_round_trip(message):
    again = pickle.loads(pickle.dumps(message))
    assert again == message and type(again) is type(message)
    assert again.kind == message.kind


class Socket:
    """A controller's end of the socket, with the requests it will send."""

    def __init__(self, requests: list[Any]) -> None:
        self.requests = list(requests)
        self.sent: list[Any] = []

    def recv(self) -> Any:
        if not self.requests:
            raise EOFError
        return self.requests.pop(0)

    def send(self, event: Any) -> None:
        self.sent.append(event)


def test_a_worker_answers_an_unknown_request_with_an_error_and_serves_on(tmp_path: Path):
    module = tmp_path / "conftest.py"
    module.write_text("class T:\n    pass\n")
    conn = Socket([{"op": "setup"}, "reboot", protocol.Preload(f"{module}:T"),
                   protocol.Stop(), protocol.Preload(f"{module}:T")])
    assert Worker(0, threads=1).serve(conn) == 0
    first, second, third = conn.sent
    assert isinstance(first, protocol.Error) and first.request == "dict"
    assert first.message == "ValueError: unknown request 'dict'"
    assert isinstance(second, protocol.Error) and "unknown request 'str'" in second.message
    assert third == protocol.Preloaded()
    assert conn.requests == [protocol.Preload(f"{module}:T")]  # it stopped at Stop


def test_a_failed_request_is_an_error_event_naming_it():
    event = Worker(0, threads=1).answer(protocol.Test("/nowhere.pt"), Socket([]))
    assert isinstance(event, protocol.Error) and event.request == "test"
    assert "Traceback" in event.traceback
