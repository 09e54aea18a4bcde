"""How numbers and tables read in reports: one formatter for every table we print, and
the GitHub Markdown table of report.md (a plugin's sections use them too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def github_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A table of report.md: cells as given (format numbers with ``fmt`` first)."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
