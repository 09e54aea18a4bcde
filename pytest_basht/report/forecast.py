"""The forecast beside the outcome: each figure's error and whether the outcome fell in
the band (``judge``, a pure function the scenario record calls), and the **Forecast**
paragraph of report.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_basht.forecast import UNITS, outcome_of
from pytest_basht.report.format import fmt

LABELS = {"jct_s": "JCT", "energy_j": "energy", "co2_g": "CO2", "cost_usd": "cost"}


def judge(forecast: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The forecast with the outcome beside it: each figure's error (forecast − outcome,
    in % of the outcome) and whether the outcome fell inside the band."""
    outcome = outcome_of(metrics)
    error: dict[str, float | None] = {}
    inside = {}
    for key, band in forecast["figures"].items():
        real = outcome[key]
        error[key] = (band["value"] - real) / real * 100.0 if real else None
        inside[key] = bool(band["low"] <= real <= band["high"])
    return {**forecast, "outcome": outcome, "error_pct": error, "within_band": inside}


def lines(record: Mapping[str, Any]) -> list[str]:
    """The scenario's **Forecast** paragraph (none when none was asked for)."""
    forecast = record.get("forecast")
    if not forecast:
        return []
    if not forecast.get("figures"):
        return ["**Forecast**: none — " + "; ".join(forecast.get("notes") or []) + ".", ""]
    parts = []
    for key, band in forecast["figures"].items():
        unit = UNITS[key]
        text = (f"{LABELS[key]} {fmt(band['value'])} {unit} "
                f"({fmt(band['low'])}–{fmt(band['high'])})")
        if "outcome" in forecast:
            err = forecast["error_pct"][key]
            text += (f" → {fmt(forecast['outcome'][key])} {unit}"
                     + (f", error {err:+.1f} %" if err is not None else "")
                     + ("" if forecast["within_band"][key] else ", outside the band"))
        parts.append(text)
    how = f"{forecast['method']}: {forecast['source']}"
    notes = forecast.get("notes") or []
    return [f"**Forecast** ({how}; forecast (band) → outcome): " + "; ".join(parts) + "."
            + (" " + " ".join(f"{n}." for n in notes) if notes else ""), ""]
