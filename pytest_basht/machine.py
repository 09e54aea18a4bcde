"""Where a run happened: machine fingerprint, package versions, git commit."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

import pytest_basht.reading as reading

PROC_BYTES = 16_000_000  # /proc/cpuinfo of a many-core machine is a few hundred KB
PACKAGES = ("pytest-basht", "pytest", "pytest-xdist", "optuna", "torch", "torchvision",
            "numpy", "psutil", "mlxtend", "nvidia-ml-py", "prometheus-api-client")


def cpu_model() -> str:
    try:
        for line in reading.read_text("/proc/cpuinfo", PROC_BYTES).splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerators() -> list[str]:
    """GPU names through NVML, or nothing (no driver, no GPU)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        return [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def fingerprint(meter_source: str = "") -> dict[str, Any]:
    """What makes measurements comparable: CPU, cores, memory, accelerators, meter source."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    fp: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": cores,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "accelerators": accelerators(),
        "meter_source": meter_source,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    keyed = {k: fp[k] for k in ("cpu_model", "cores", "memory_gb", "accelerators",
                                "meter_source")}
    fp["id"] = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    return fp


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the repository holding ``path``, or None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty, "branch": branch}
