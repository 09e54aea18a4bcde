"""How numbers and tables read in reports: one formatter for every table we print, and
the GitHub Markdown table of report.md (a plugin's sections use them too)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

_PIPE = re.compile(r"(?<!\\)\|")  # a pipe not escaped already


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
    """A table of report.md: cells as given (format numbers with ``fmt`` first), a pipe
    inside a cell escaped (``|Φ|`` would otherwise split it)."""
    return tabulate([[_escape(c) for c in row] for row in rows],
                    headers=[_escape(h) for h in headers], tablefmt="github",
                    disable_numparse=True)


def _escape(cell: Any) -> Any:
    return _PIPE.sub(r"\|", cell) if isinstance(cell, str) else cell
