"""Resource limits: whether each was enforced and how, and what a machine lacks."""

from __future__ import annotations

import os
import sys
import types

import psutil
import pytest

from pytest_basht.sut import limits
from pytest_basht.sut.limits import plan_cpus


def test_cpu_enforced_when_every_worker_has_its_own_cores(monkeypatch):
    monkeypatch.setattr(limits, "can_pin", lambda: True)
    plan = plan_cpus(2, 2, cores=[0, 1, 2, 3])
    rec = limits.cpu_record(plan, [[0, 1], [2, 3]])
    assert rec["enforced"] is True and rec["exclusive"] is True
    assert rec["given_per_worker"] == 2 and rec["observed_affinity"] == [[0, 1], [2, 3]]
    assert "sched_setaffinity to 2 core(s) per worker (checked)" in rec["how"]
    assert "torch.set_num_threads(2)" in rec["how"]


def test_cpu_not_enforced_when_the_machine_gives_fewer_than_asked(monkeypatch):
    monkeypatch.setattr(limits, "can_pin", lambda: True)
    plan = plan_cpus(4, 2, cores=[0, 1])  # the baseline on 2 cores
    rec = limits.cpu_record(plan, [[0], [1], [0], [1]])
    assert rec["enforced"] is False and rec["exclusive"] is False
    assert rec["how"].startswith("not enforced: asked 2 vCPUs per worker, 2 cores for 4 "
                                 "workers gave 1")
    assert "cores shared ×2 between workers" in rec["how"]


def test_cpu_not_enforced_when_the_os_reports_other_cores(monkeypatch):
    monkeypatch.setattr(limits, "can_pin", lambda: True)
    plan = plan_cpus(2, 1, cores=[0, 1])
    rec = limits.cpu_record(plan, [[0], [0, 1]])
    assert rec["enforced"] is False and "differs from the plan" in rec["how"]
    rec = limits.cpu_record(plan, [[0], None])  # a worker that could not be asked
    assert rec["enforced"] is False


def test_cpu_not_enforced_without_affinity(monkeypatch):
    monkeypatch.setattr(limits, "can_pin", lambda: False)
    rec = limits.cpu_record(plan_cpus(1, 1, cores=[0]), [None])
    assert rec["enforced"] is False and "no sched_setaffinity" in rec["how"]


def test_affinity_of_reads_this_process():
    assert limits.affinity_of(os.getpid()) == sorted(os.sched_getaffinity(0))
    assert limits.affinity_of(2**22 + 12345) is None  # no such process


def test_memory_record():
    rec = limits.memory_record(2048, 4, [708.5, 709.0, 0.0, 710.1],
                               ["worker 1: memory cap exceeded: 900 MB > 768 MB (killed)",
                                "worker 2: trial timeout: ran 4 s > 3 s (killed)"], True)
    assert rec["enforced"] is True and rec["kills"] == 1
    assert rec["how"].startswith("watchdog: RSS of each worker's process tree")
    unread = limits.memory_record(2048, 4, [0.0, 0.0], [], False)
    assert unread["enforced"] is False and "cannot read" in unread["how"]
    machine_mb = int(psutil.virtual_memory().total / 2**20)
    shared = limits.memory_record(machine_mb // 2, 4, [700.0], [], True)
    assert shared["enforced"] is True and "a cap, not a reservation" in shared["how"]
    # a cap past the machine's memory can never trigger: not enforced as asked (issue 20)
    huge = limits.memory_record(10**7, 4, [700.0], [], True)
    assert huge["enforced"] is False and huge["how"].startswith("not enforced as asked")
    assert limits.memory_cap_bytes(10**7) == psutil.virtual_memory().total
    assert limits.memory_cap_bytes(512) == 512 * 2**20


def test_the_watchdog_reads_a_process_tree():
    assert limits.tree_rss_bytes(os.getpid()) > 10 * 2**20
    assert limits.tree_rss_bytes(2**22 + 12345) == 0


def test_accelerator_record():
    assert limits.accelerator_record("cpu", "cpu", 4)["enforced"] is True
    gpu = limits.accelerator_record("gpu", "cuda", 4)
    assert gpu["enforced"] is True and gpu["exclusive"] is False and "share" in gpu["how"]
    assert limits.accelerator_record("gpu", "cuda", 1)["exclusive"] is True
    wrong = limits.accelerator_record("tpu", "cpu", 1)
    assert wrong["enforced"] is False and "asked tpu" in wrong["how"]


@pytest.fixture
def fresh_gpu_check():
    limits._gpu_missing.cache_clear()
    yield
    limits._gpu_missing.cache_clear()


def fake_nvml(monkeypatch, *, init_error: Exception | None = None, count: int = 0) -> None:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if init_error is not None:
            raise init_error

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: count  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", module)


def test_accelerator_missing_names_what_is_missing(monkeypatch, fresh_gpu_check):
    assert limits.accelerator_missing("cpu") is None
    assert "no TPU" in limits.accelerator_missing("tpu")
    fake_nvml(monkeypatch, init_error=OSError("NVML Shared Library Not Found"))
    assert limits.accelerator_missing("gpu") == ("no GPU: NVML is unavailable (OSError: NVML "
                                                 "Shared Library Not Found)")
    limits._gpu_missing.cache_clear()
    fake_nvml(monkeypatch, count=0)
    assert limits.accelerator_missing("gpu") == "no GPU: NVML sees 0 devices"


def test_accelerator_missing_when_torch_cannot_use_the_gpu(monkeypatch, fresh_gpu_check):
    fake_nvml(monkeypatch, count=1)
    torch = types.ModuleType("torch")
    torch.__version__ = "2.x+cpu"  # type: ignore[attr-defined]
    torch.version = types.SimpleNamespace(cuda=None)  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    reason = limits.accelerator_missing("gpu")
    assert reason == ("no usable GPU: NVML sees 1 device(s) but torch 2.x+cpu cannot use CUDA "
                      "(torch.version.cuda = None)")
    limits._gpu_missing.cache_clear()
    torch.cuda = types.SimpleNamespace(is_available=lambda: True)  # type: ignore[attr-defined]
    assert limits.accelerator_missing("gpu") is None


def test_a_worker_imports_the_trainable_at_deploy(tmp_path):
    from pytest_basht.sut import protocol
    from pytest_basht.sut.worker import Worker

    module = tmp_path / "conftest.py"
    module.write_text("class T:\n    pass\n")
    worker = Worker(0, threads=1)
    assert worker.preload(protocol.Preload(f"{module}:T")) == protocol.Preloaded()
    loaded = [m for m in sys.modules.values() if getattr(m, "__file__", None) == str(module)]
    assert len(loaded) == 1 and loaded[0].T.__name__ == "T"
