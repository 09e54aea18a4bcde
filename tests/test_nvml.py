"""The NVML meter's arithmetic on counter and power sequences, and a live run on a GPU.

There is no GPU on the machines that run this suite: the sequences below are shaped like
NVML's answers (an energy counter in mJ since the driver loaded on Volta and newer, power
in mW otherwise) and replayed through the same meter code. The live test needs a GPU.
"""

from __future__ import annotations

import pytest

from pytest_basht import wiring
from pytest_basht import workload as wl
from pytest_basht.energy.base import Usage
from pytest_basht.energy.factory import select_meter
from pytest_basht.energy.nvml import NvmlMeter
from pytest_basht.errors import WorkloadError

S = 1_000_000_000


class Replay:
    """NVML answers from lists, one step per read (index 0 is what ``start`` sees)."""

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus
        self.step = [0] * len(gpus)
        self.closed = False

    def count(self) -> int:
        return len(self.gpus)

    def name(self, index: int) -> str:
        return self.gpus[index]["name"]

    def _next(self, index: int, key: str) -> int:
        values = self.gpus[index][key]
        value = values[min(self.step[index], len(values) - 1)]
        self.step[index] += 1
        return value

    def total_energy_mj(self, index: int) -> int | None:
        if "energy_mj" not in self.gpus[index]:
            return None
        return self._next(index, "energy_mj")

    def power_mw(self, index: int) -> int:
        return self._next(index, "power_mw")

    def power_limit_mw(self, index: int) -> int | None:
        return self.gpus[index].get("limit_mw")

    def close(self) -> None:
        self.closed = True


def test_energy_counter_differences():
    # the probe at construction takes one value; start takes the base, reads the rest
    gpu = {"name": "A100", "energy_mj": [0, 1_000_000, 1_000_500, 1_002_000, 1_007_250],
           "limit_mw": 400_000}
    meter = NvmlMeter(Replay([gpu]))
    meter.start(Usage(0, 0, 0))
    r1 = meter.read(Usage(S, 0, 0))
    r2 = meter.read(Usage(2 * S, 0, 0))
    r3 = meter.read(Usage(3 * S, 0, 0))
    assert [r.joules["gpu0"] for r in (r1, r2, r3)] == pytest.approx([0.5, 2.0, 7.25])
    assert meter.max_power_w() == 400.0 and meter.min_sample_hz() == 0.0
    assert meter.describe()["gpus"][0]["method"] == "energy counter"


def test_power_samples_are_integrated_by_trapezoids():
    gpu = {"name": "P100", "power_mw": [100_000, 200_000, 200_000, 50_000]}
    meter = NvmlMeter(Replay([gpu]))
    meter.start(Usage(0, 0, 0))  # 100 W at t=0
    meter.read(Usage(S, 0, 0))  # 200 W at 1 s: 150 J
    meter.read(Usage(3 * S, 0, 0))  # 200 W until 3 s: +400 J
    r = meter.read(Usage(3 * S + S // 2, 0, 0))  # down to 50 W at 3.5 s: +62.5 J
    assert r.joules["gpu0"] == pytest.approx(150 + 400 + 62.5)
    assert meter.min_sample_hz() == 10.0  # integration needs samples
    assert meter.describe()["gpus"][0]["method"] == "power × time"


def test_gpus_are_separate_domains_and_the_counter_never_goes_back():
    counter = {"name": "H100", "energy_mj": [0, 10_000, 13_000, 12_000]}  # a glitch back
    power = {"name": "T4", "power_mw": [70_000, 70_000, 70_000]}
    meter = NvmlMeter(Replay([counter, power]))
    meter.start(Usage(0, 0, 0))
    r1 = meter.read(Usage(S, 0, 0))
    r2 = meter.read(Usage(2 * S, 0, 0))
    assert r1.joules == pytest.approx({"gpu0": 3.0, "gpu1": 70.0})
    assert r2.joules == pytest.approx({"gpu0": 3.0, "gpu1": 140.0})
    assert r2.total == pytest.approx(143.0) and r2.source == "nvml"
    meter.close()
    assert meter.backend.closed


def test_without_a_gpu_nvml_is_skipped_by_auto_and_refused_by_name():
    found = NvmlMeter.available()
    if found.ok:
        pytest.skip("this machine has a GPU")
    assert "NVIDIA" in found.reason or "NVML" in found.reason
    selection = select_meter(wiring.meters(), wl.from_mapping({}))
    assert "nvml skipped" in selection.reason
    with pytest.raises(WorkloadError, match=r"a meter this machine provides \(nvml"):
        select_meter(wiring.meters(),
                     wl.from_mapping({"energy": {"meter": "nvml"}}))


def test_live_gpu_training_loop_is_metered():
    if not NvmlMeter.available().ok:
        pytest.skip("needs an NVIDIA GPU and driver (none here)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from pytest_basht.energy.monitor import EnergyMonitor

    monitor = EnergyMonitor(NvmlMeter(), hz=10)
    monitor.start()
    x = torch.randn(4096, 4096, device="cuda")
    with monitor.window("matmul") as w:
        for _ in range(200):
            x = torch.tanh(x @ x)
    monitor.stop()
    assert w.energy_j > 0 and w.power_w > 10 and w.measured
