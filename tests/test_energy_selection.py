"""Choosing and combining meters: comma lists, overlaps, auto with a CPU and a GPU source,
the estimate for the CPU when no counter is there, usage errors, idle handling."""

from __future__ import annotations

import time

import pytest
from rapl_tree import FakeRapl
from test_nvml import Replay

from pytest_basht import workload as wl
from pytest_basht.energy.base import Allocation, Availability, Usage
from pytest_basht.energy.combined import CombinedMeter
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.factory import check_energy, select_meter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.energy.nvml import NvmlMeter
from pytest_basht.energy.process import machine_cpu_s
from pytest_basht.energy.prometheus import PrometheusMeter
from pytest_basht.energy.rapl import RaplMeter
from pytest_basht.errors import WorkloadError

S = 1_000_000_000


class ReplayNvml(NvmlMeter):
    """The NVML meter on a replayed GPU: one Volta-class board drawing 100 W."""

    @classmethod
    def available(cls) -> Availability:
        return Availability(True, "1 GPU(s) through NVML (replayed)")

    @classmethod
    def from_workload(cls, workload: wl.Workload) -> ReplayNvml:
        mj = list(range(0, 100_000_000, 10_000))
        return cls(Replay([{"name": "V100", "energy_mj": mj, "limit_mw": 300_000}]))


def meters(gpu: bool = True) -> dict:
    out = {"estimate": EstimateMeter, "rapl": RaplMeter, "prometheus": PrometheusMeter}
    out["nvml"] = ReplayNvml if gpu else NvmlMeter
    return out


def energy(root, meter: str = "auto", **extra) -> wl.Workload:
    return wl.from_mapping({"energy": {"meter": meter, "rapl": {"root": str(root)}, **extra}})


def test_auto_combines_rapl_and_the_gpu(tmp_path):
    FakeRapl(tmp_path)
    selection = select_meter(meters(), energy(tmp_path))
    meter = selection.meter
    assert isinstance(meter, CombinedMeter) and meter.measured
    assert meter.source == "rapl+nvml" and meter.covers == {"cpu", "dram", "gpu"}
    assert "rapl (auto:" in selection.reason and "nvml (auto:" in selection.reason
    meter.start(Usage(0, 0, 0))
    reading = meter.read(Usage(S, 0, 0))
    assert set(reading.joules) == {"rapl:package-0", "rapl:dram-0", "nvml:gpu0"}
    assert meter.max_power_w() == pytest.approx(150 + 500 + 300)


def test_auto_without_a_cpu_counter_estimates_the_cpu_and_measures_the_gpu(tmp_path):
    selection = select_meter(meters(), energy(tmp_path))
    meter = selection.meter
    assert meter.source == "nvml+estimate:ccf-linear" and not meter.measured
    assert "estimate (no real CPU energy counter" in selection.reason
    parts = {p["name"]: p["measured"] for p in meter.describe()["parts"]}
    assert parts == {"nvml": True, "estimate": False}
    meter.start(Usage(0, 0.0, 0))
    reading = meter.read(Usage(S, 0.5, 0))
    assert reading.band is not None and reading.band[0] < reading.total < reading.band[1]
    assert meter.modelled_idle_power_w() is None  # the GPU's idle must be measured


def test_a_comma_list_combines_exactly_what_it_names(tmp_path):
    FakeRapl(tmp_path)
    only_rapl = select_meter(meters(), energy(tmp_path, "rapl"))
    assert only_rapl.meter.source == "rapl"
    both = select_meter(meters(), energy(tmp_path, "rapl, nvml"))
    assert both.meter.source == "rapl+nvml"
    gpu_and_estimate = select_meter(meters(), energy(tmp_path, "nvml,estimate"))
    assert gpu_and_estimate.meter.source == "nvml+estimate:ccf-linear"


def test_meters_covering_the_same_device_are_refused(tmp_path):
    with pytest.raises(WorkloadError, match=r"meters covering different devices \(rapl covers "
                                            r"cpu, dram; estimate covers cpu, memory\)"):
        check_energy(energy(tmp_path, "rapl,estimate"), meters())
    with pytest.raises(WorkloadError, match="distinct meter names"):
        check_energy(energy(tmp_path, "nvml,nvml"), meters())


def test_a_gpu_meter_missing_by_name_is_a_usage_error(tmp_path):
    FakeRapl(tmp_path)
    with pytest.raises(WorkloadError, match=r"a meter this machine provides \(nvml"):
        select_meter(meters(gpu=False), energy(tmp_path, "rapl,nvml"))


def test_prometheus_url_must_not_carry_credentials_in_a_workload(tmp_path):
    w = energy(tmp_path, prometheus={"url": "http://me:secret@prom:9090"})
    with pytest.raises(WorkloadError) as err:
        check_energy(w, meters())
    assert "without credentials" in str(err.value) and "secret" not in str(err.value)
    with pytest.raises(WorkloadError, match="an http:// or https:// URL"):
        check_energy(energy(tmp_path, prometheus={"url": "ftp://prom"}), meters())


def test_modelled_meters_skip_the_idle_measurement():
    monitor = EnergyMonitor(EstimateMeter(), hz=10)
    assert monitor.measure_idle(5.0) is None and not monitor.idle_measured
    assert monitor.idle_power_w == EstimateMeter().modelled_idle_power_w()


def test_no_idle_window_is_a_warning_not_a_guess(tmp_path):
    FakeRapl(tmp_path)
    monitor = EnergyMonitor(RaplMeter(tmp_path), hz=10)
    monitor.start()
    assert monitor.measure_idle(0) is None
    monitor.stop()
    assert monitor.idle_power_w == 0.0 and not monitor.idle_measured
    assert "idle draw not measured" in monitor.describe()["warnings"][0]


def test_estimate_band_brackets_the_estimate_and_follows_the_coefficients():
    meter = EstimateMeter(wl.EstimateSpec())
    meter.hold(Allocation(vcpus=2, memory_gb=4.0))
    meter.start(Usage(0, 0.0, 0))
    r = meter.read(Usage(10 * S, 5.0, 0))  # 10 s, 5 CPU-seconds on 2 vCPUs
    mem = 4 * 0.392 * 10
    assert r.total == pytest.approx(2 * 0.74 * 10 + 5 * (3.5 - 0.74) + mem)
    assert r.band == pytest.approx((2 * 0.45 * 10 + 5 * (1.87 - 0.45) + mem,
                                    2 * 1.90 * 10 + 5 * (5.99 - 1.90) + mem))


def test_machine_scope_models_every_cpu_from_machine_cpu_time():
    meter = EstimateMeter(wl.EstimateSpec(scope="machine"))
    meter.start(Usage(0, 0.0, 0, machine_cpu_s=100.0))
    r = meter.read(Usage(S, 0.0, 0, machine_cpu_s=101.5))  # 1.5 busy cores, none ours
    cpus = meter._vcpus()
    assert r.joules["cpu"] == pytest.approx(cpus * 0.74 + min(1.5, cpus) * (3.5 - 0.74))
    assert meter.source == "estimate:ccf-linear/machine" and meter.scope == "machine"


def test_machine_cpu_time_counts_every_process_on_the_machine():
    before = machine_cpu_s()
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    assert machine_cpu_s() - before >= 0.25
