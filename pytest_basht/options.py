"""The ``--basht-*`` options and their ``basht_*`` ini keys, as one frozen dataclass.

Each option is declared once in ``OPTIONS``; a command-line value wins over the ini key.
Values are validated here, so a malformed one is a usage error naming the option.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_basht import budget
from pytest_basht.energy import carbon
from pytest_basht.energy.base import MeterContext
from pytest_basht.errors import OptionError
from pytest_basht.urls import problem, redact, split_credentials
from pytest_basht.workload import MAX_SEED

NAME_MAX = 200  # a saved run's name: the history's name column
REPEAT_MAX = 1000  # runs of each scenario: each is a test item, held in memory at collection


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
    expected = f"a non-negative integer below 2³² (at most {MAX_SEED})"
    try:
        value = int(raw)
    except ValueError:  # not a number, or past Python's limit on digits
        raise OptionError(option, expected, raw) from None
    if not 0 <= value <= MAX_SEED:
        raise OptionError(option, expected, raw)
    return value


def _carbon(option: str, raw: str) -> float | str | Path:
    """A number (gCO2eq/kWh), a region of the shipped table, or a CSV series (a path)."""
    expected = ("a number ≥ 0 (gCO2eq/kWh), a region (" + ", ".join(carbon.REGIONS)
                + ") or a .csv file of timestamp,gCO2eq/kWh")
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        if text.lower().endswith(".csv"):
            return Path(text)
        if carbon.region(text) is not None:
            return text.lower()
        raise OptionError(option, expected, raw) from None
    if not math.isfinite(value) or value < 0:
        raise OptionError(option, expected, raw)
    return value


def _url(option: str, raw: str) -> str:
    value = _text(option, raw)
    why = problem(value)
    if why is not None:
        raise OptionError(option, why, redact(value))
    return value


def _listen(option: str, raw: str) -> tuple[str, int]:
    """``PORT`` (on 127.0.0.1) or ``HOST:PORT``."""
    host, _, port = raw.strip().rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise OptionError(option, "a port (0-65535) or HOST:PORT", raw) from None
    if not 0 <= number <= 65535:
        raise OptionError(option, "a port (0-65535) or HOST:PORT", raw)
    return (host.strip("[]") or "127.0.0.1", number)


def _repeat(option: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise OptionError(option, "a whole number ≥ 1", raw) from None
    if not 1 <= value <= REPEAT_MAX:
        raise OptionError(option, f"a whole number from 1 to {REPEAT_MAX:,}", raw)
    return value


def _switch(option: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise OptionError(option, "true or false", raw)


def _rank_by(option: str, raw: str) -> str:
    from pytest_basht.report import ranking

    try:
        return ranking.rank_key(raw).name
    except ValueError as exc:
        raise OptionError(option, str(exc), raw) from None


def _fail_on(option: str, raw: str) -> tuple[Any, ...]:
    from pytest_basht.report.gate import ThresholdError, parse_fail_on

    try:
        return tuple(parse_fail_on(raw))
    except ThresholdError as exc:
        raise OptionError(option, str(exc), raw) from None


def _history(option: str, raw: str) -> str:
    """``off``, a file path or an SQLAlchemy URL whose driver is installed (checked now, not
    when the run ends and its history cannot be saved)."""
    import pytest_basht.db as db
    from pytest_basht.report import history

    value = _text(option, raw)
    why = history.url_problem(value)
    if why is not None:
        raise OptionError(option, why, db.shown(value))
    return value


def _name(option: str, raw: str) -> str:
    value = _text(option, raw)
    if len(value) > NAME_MAX:
        raise OptionError(option, f"a name of at most {NAME_MAX} characters", value)
    return value


def _budget(option: str, raw: str) -> str:
    value = raw.strip()
    if value not in budget.NAMES:
        raise OptionError(option, "one of " + ", ".join(budget.NAMES), raw)
    return value


def _forecast(option: str, raw: str) -> str | Path:
    """off, table, or a .json file of forecasts (``basht forecast --json``)."""
    value = raw.strip()
    if value in ("off", "table"):
        return value
    if value.lower().endswith(".json"):
        return Path(value)
    raise OptionError(option, "off, table, or a .json file that basht forecast --json wrote",
                      raw)


def _sut(option: str, raw: str) -> dict[str, Any]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (values read as YAML scalars)."""
    import yaml

    expected = ("a SUT name, or NAME:KEY=VALUE,... with its options "
                "(e.g. ray, or optuna:storage=postgresql://basht@db/basht)")
    name, _, rest = raw.strip().partition(":")
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise OptionError(option, expected, redact(raw))
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, text = pair.partition("=")
        if not eq or not key.strip():
            raise OptionError(option, expected, redact(raw))
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        options[key.strip()] = value if isinstance(value, (str, int, float, bool)) or (
            value is None) else text
    return {"name": name, "options": options}


@dataclass(frozen=True)
class OptionSpec:
    name: str
    metavar: str
    help: str
    parse: Callable[[str, str], Any]
    default: str | None = None
    takes_value: bool = True  # False: a switch (--flag), its ini key true/false

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
    OptionSpec("basht_carbon_intensity", "G_PER_KWH", "carbon intensity: gCO2eq/kWh, a "
               "region name (france, germany, ...) or a CSV of timestamp,gCO2eq/kWh "
               "(default: the workload's, else 475, the world average)", _carbon),
    OptionSpec("basht_pue", "X", "power usage effectiveness applied to every energy figure "
               "(default: the workload's, else 1.0)", _number(lambda v: v >= 1, "a PUE ≥ 1.0")),
    OptionSpec("basht_seed", "N", "seed for samplers, splits and models (default: the "
               "workload's, else 42)", _seed),
    OptionSpec("basht_prometheus_url", "URL", "Prometheus server the prometheus meter "
               "queries (credentials as user:password@ are used, never logged)", _url),
    OptionSpec("basht_prometheus_port", "[HOST:]PORT", "serve the run's live metrics for "
               "Prometheus on this port (127.0.0.1 unless HOST is given)", _listen),
    OptionSpec("basht_pushgateway", "URL", "push the run's metrics to this Prometheus "
               "Pushgateway at the end", _url),
    OptionSpec("basht_history", "URL", "run history store: an SQLAlchemy URL (sqlite:///..., "
               "postgresql://user@host/db), a file path (SQLite), or 'off' (default: "
               ".basht/history.sqlite under the rootdir)", _history),
    OptionSpec("basht_save", "NAME", "save this run in the history under NAME (every run is "
               "saved; a name makes it easy to compare against)", _name),
    OptionSpec("basht_compare", "REF", "compare with a baseline: a report.json (or its run "
               "directory), a saved name, a run id, or 'last' (the newest run of this machine "
               "in the history)", _text),
    OptionSpec("basht_fail_on", "SPEC", "fail the run when a metric regresses past a "
               "threshold, e.g. 'energy_kwh:+10%,jct_ms:+20%,wte_kwh:+0.001' (needs "
               "--basht-compare)", _fail_on),
    OptionSpec("basht_repeat", "N", "run each scenario N times (samples for the gate's "
               "significance test; default 1, at most 1,000)", _repeat),
    OptionSpec("basht_compare_any_machine", "", "compare with a baseline from another machine "
               "fingerprint (refused otherwise)", _switch, takes_value=False),
    OptionSpec("basht_budget", "NAME", "full: run workloads as written; smoke: fewer epochs, "
               "trials and sweep steps (default: full)", _budget, "full"),
    OptionSpec("basht_progress_every", "SECONDS", "without a TTY (CI logs), write the progress "
               "line of a running scenario every SECONDS (default: 30; on a TTY one line is "
               "updated in place; none under -qq)",
               _number(lambda v: v > 0, "a number of seconds > 0"), "30"),
    OptionSpec("basht_sut", "NAME[:KEY=VALUE,...]", "run every scenario on this SUT, with "
               "these options (replaces the workload's sut section), e.g. ray or "
               "optuna:storage=postgresql://basht@db/basht", _sut),
    OptionSpec("basht_forecast", "MODE", "forecast each scenario before it runs and report "
               "the forecast beside the outcome: table (replays of a recorded table that "
               "answers the workload: seconds; none when no table does), or a .json of "
               "forecasts basht forecast --json wrote (default: off)", _forecast, "off"),
    OptionSpec("basht_forecast_tables", "DIR", "the recorded tables a table forecast may "
               "use: a folder of *.csv or one table (default: benchmarks/tables)", _text,
               "benchmarks/tables"),
    OptionSpec("basht_rank_by", "KEY", "rank setups by what it took to first reach the "
               "goal's target: eta (energy, the default), tta (time), cost or co2", _rank_by,
               "eta"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("basht", "pytest-basht: sustainable HPO benchmarks")
    for spec in OPTIONS:
        if spec.takes_value:
            group.addoption(spec.flag, dest=spec.dest, metavar=spec.metavar, default=None,
                            help=spec.help)
        else:
            group.addoption(spec.flag, dest=spec.dest, action="store_const", const="true",
                            default=None, help=spec.help)
        parser.addini(spec.name, help=spec.help, default=spec.default)


@dataclass(frozen=True)
class BashtOptions:
    """One field per entry of OPTIONS (its name without ``basht_``); new ones need defaults."""

    workload: Path | None
    report_dir: Path
    meter: str | None
    carbon_intensity: float | str | Path | None
    pue: float | None
    seed: int | None
    prometheus_url: str | None = None
    prometheus_port: tuple[str, int] | None = None
    pushgateway: str | None = None
    history: str | None = None
    save: str | None = None
    compare: str | None = None
    fail_on: tuple[Any, ...] | None = None
    repeat: int | None = None
    compare_any_machine: bool | None = None
    budget: str = "full"
    progress_every: float = 30.0
    sut: dict[str, Any] | None = None
    forecast: str | Path = "off"
    forecast_tables: Path | None = None
    rank_by: str = "eta"

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
            if spec.metavar in ("PATH", "DIR") or isinstance(value, Path):
                value = Path(value) if Path(value).is_absolute() else base / value
            values[spec.dest] = value
        return cls(**{dest.removeprefix("basht_"): value for dest, value in values.items()})

    def workload_overrides(self) -> dict[str, Any]:
        """Options that override what workload files say."""
        out: dict[str, Any] = {}
        if self.meter is not None:
            out["energy.meter"] = self.meter
        if isinstance(self.carbon_intensity, float):
            out["energy.carbon_intensity"] = self.carbon_intensity
            out["energy.carbon_region"] = out["energy.carbon_series"] = None
        elif isinstance(self.carbon_intensity, Path):
            out["energy.carbon_series"] = str(self.carbon_intensity)
        elif isinstance(self.carbon_intensity, str):
            out["energy.carbon_region"] = self.carbon_intensity
            out["energy.carbon_series"] = None
        if self.prometheus_url is not None:
            out["energy.prometheus.url"] = split_credentials(self.prometheus_url)[0]
        if self.pue is not None:
            out["energy.pue"] = self.pue
        if self.seed is not None:
            out["seed"] = self.seed
        if self.sut is not None:
            out["sut.name"] = self.sut["name"]
            out["sut.options"] = dict(self.sut["options"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """The options as a report shows them: paths as text, never a password or token."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, Path):
                value = str(value)
            elif key in ("prometheus_url", "pushgateway"):
                value = redact(value)
            elif key == "sut" and value is not None:
                value = {"name": value["name"], "options": {
                    k: redact(v) if isinstance(v, str) else v
                    for k, v in value["options"].items()}}
            elif key == "fail_on" and value is not None:
                value = ",".join(t.text for t in value)
            elif key == "history" and value is not None:
                import pytest_basht.db as db  # SQLAlchemy loads only with --basht-history

                value = db.shown(value)
            out[key] = value
        return out

    def meter_context(self) -> MeterContext:
        """Credentials for the prometheus meter: from the option's URL, else the environment
        (BASHT_PROMETHEUS_USER / _PASSWORD, or BASHT_PROMETHEUS_TOKEN for a bearer token)."""
        auth = split_credentials(self.prometheus_url)[1] if self.prometheus_url else None
        env = os.environ
        if auth is None and env.get("BASHT_PROMETHEUS_USER"):
            auth = (env["BASHT_PROMETHEUS_USER"], env.get("BASHT_PROMETHEUS_PASSWORD", ""))
        return MeterContext(prometheus_auth=auth,
                            prometheus_token=env.get("BASHT_PROMETHEUS_TOKEN") or None)
