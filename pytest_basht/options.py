"""The ``--basht-*`` options and their ``basht_*`` ini keys, as one frozen dataclass.

Each option is declared once in ``OPTIONS``; a command-line value wins over the ini key.
Values are validated here, so a malformed one is a usage error naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_basht import budget
from pytest_basht.errors import OptionError


def _text(option: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise OptionError(option, "a non-empty value", raw)
    return value


def _number(check: Callable[[float], bool], expected: str) -> Callable[[str, str], float]:
    def parse(option: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise OptionError(option, expected, raw) from None
        if not math.isfinite(value) or not check(value):
            raise OptionError(option, expected, raw)
        return value

    return parse


def _seed(option: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise OptionError(option, "a non-negative integer", raw) from None
    if value < 0:
        raise OptionError(option, "a non-negative integer", raw)
    return value


def _budget(option: str, raw: str) -> str:
    value = raw.strip()
    if value not in budget.NAMES:
        raise OptionError(option, "one of " + ", ".join(budget.NAMES), raw)
    return value


@dataclass(frozen=True)
class OptionSpec:
    name: str
    metavar: str
    help: str
    parse: Callable[[str, str], Any]
    default: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name.replace('_', '-')}"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("basht_workload", "PATH", "workload file (YAML or JSON) for scenarios without "
               "their own", _text),
    OptionSpec("basht_report_dir", "DIR", "where reports go (default: reports)", _text,
               "reports"),
    OptionSpec("basht_meter", "NAME", "energy meter: auto, estimate, or a registered name "
               "(default: the workload's, else auto)", _text),
    OptionSpec("basht_carbon_intensity", "G_PER_KWH", "carbon intensity in gCO2eq/kWh "
               "(default: the workload's, else 475, the world average)",
               _number(lambda v: v >= 0, "a number ≥ 0 (gCO2eq/kWh)")),
    OptionSpec("basht_pue", "X", "power usage effectiveness applied to every energy figure "
               "(default: the workload's, else 1.0)", _number(lambda v: v >= 1, "a PUE ≥ 1.0")),
    OptionSpec("basht_seed", "N", "seed for samplers, splits and models (default: the "
               "workload's, else 42)", _seed),
    OptionSpec("basht_budget", "NAME", "full: run workloads as written; smoke: fewer epochs, "
               "trials and sweep steps (default: full)", _budget, "full"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("basht", "pytest-basht: sustainable HPO benchmarks")
    for spec in OPTIONS:
        group.addoption(spec.flag, dest=spec.dest, metavar=spec.metavar, default=None,
                        help=spec.help)
        parser.addini(spec.name, help=spec.help, default=spec.default)


@dataclass(frozen=True)
class BashtOptions:
    """One field per entry of OPTIONS (its name without ``basht_``); new ones need defaults."""

    workload: Path | None
    report_dir: Path
    meter: str | None
    carbon_intensity: float | None
    pue: float | None
    seed: int | None
    budget: str = "full"

    @classmethod
    def from_config(cls, config: pytest.Config) -> BashtOptions:
        values: dict[str, Any] = {}
        for spec in OPTIONS:
            raw = config.getoption(spec.dest)
            option, base = spec.flag, config.invocation_params.dir
            if raw is None:
                raw, option = config.getini(spec.name) or spec.default, spec.name
                base = config.inipath.parent if config.inipath else config.rootpath
            if raw is None:
                values[spec.dest] = None
                continue
            value = spec.parse(option, str(raw))
            if spec.metavar in ("PATH", "DIR"):
                value = Path(value) if Path(value).is_absolute() else base / value
            values[spec.dest] = value
        return cls(**{dest.removeprefix("basht_"): value for dest, value in values.items()})

    def workload_overrides(self) -> dict[str, Any]:
        """Options that override what workload files say."""
        out: dict[str, Any] = {}
        if self.meter is not None:
            out["energy.meter"] = self.meter
        if self.carbon_intensity is not None:
            out["energy.carbon_intensity"] = self.carbon_intensity
        if self.pue is not None:
            out["energy.pue"] = self.pue
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
