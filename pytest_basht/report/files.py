"""The report's files: report.json, report.md, report.html, trials.csv and the plots of
one run, written atomically (``atomic``) into ``<report dir>/<run id>/``, with ``latest``
pointed at the run once they are written (never at a run whose files failed); the check
that the report directory is writable before a run — for real, by making and removing a
file in it, since permission bits say nothing of /proc, a read-only mount or a full quota
— and a rescue into the temporary directory when it fails at the end of one.

Nothing here decides what a report holds (``assemble`` and ``json`` do): this module only
puts it on disk, so that a failed plot or Markdown table never costs report.json.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_basht.errors import OptionError
from pytest_basht.report import experiments, fronts, markdown, plots, trials_csv
from pytest_basht.report import html as report_html
from pytest_basht.report import json as report_json
from pytest_basht.report.atomic import write_atomic


def unwritable(directory: Path) -> str | None:
    """Why reports cannot be written into ``directory`` (created if missing), or None.
    Creates nothing: it finds the nearest part of the path that exists and checks it."""
    path = Path(os.path.abspath(directory))
    for part in (path, *path.parents):
        if not os.path.lexists(part):
            continue
        if not part.is_dir():
            return f"{part} is not a directory"
        if not os.access(part, os.W_OK | os.X_OK):
            return f"{part}: permission denied"
        return None
    return None


def probe(directory: Path) -> str | None:
    """Why a file cannot be written into ``directory`` (made if missing), or None: a file
    is made there and removed."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".basht-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"{exc.filename or directory}: {exc.strerror or exc}"
    return None


def check_report_dir(directory: Path) -> None:
    """Before scenarios run: --basht-report-dir must be a directory we can write in."""
    why = unwritable(directory) or probe(directory)
    if why is not None:
        raise OptionError("--basht-report-dir", f"a directory it can write reports in "
                          f"({why})", str(directory))


def _point_latest(root: Path, run_id: str, report: dict[str, Any]) -> bool:
    """Point ``root/latest`` at the run, or say in the report's notes why it could not."""
    latest = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_id, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError as exc:  # a directory in its place, say: the report matters, not it
        tmp.unlink(missing_ok=True)
        report.setdefault("notes", []).append(f"{latest} not pointed at this run: {exc}")
        return False
    return True


def write_report(report: dict[str, Any], root: Path, plugins: Any = None,
                 say: Callable[[str], None] | None = None) -> Path:
    """Write report.json, report.md, report.html and trials.csv atomically into
    ``root/<run id>`` with the plots, then point ``latest`` at the run. Returns the run
    directory. ``plugins``: the hook caller whose ``pytest_basht_plots`` and
    ``pytest_basht_markdown_*`` hooks add the plugins' figures and sections (None: the
    report's own only). ``say`` hears each step as it starts (a long report takes a
    while). When a file cannot be written, ``latest`` stays where it was and the run
    directory made for it goes again if it is empty."""

    def tell(text: str) -> None:
        if say is not None:
            say(text)

    run_id = report["run_id"]
    run_dir = root / run_id
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            tell(f"drawing the plots into {run_dir} …")
            plots.write(report, run_dir)
            fronts.write(report, run_dir)
            if plugins is not None:
                plugins.pytest_basht_plots(report=report, run_dir=run_dir)
        except Exception as exc:  # a plot must never cost the report
            report.setdefault("notes", []).append(f"plots not written: "
                                                  f"{type(exc).__name__}: {exc}")
        try:
            tell(f"writing {trials_csv.NAME} …")
            trials_csv.write(report, run_dir / trials_csv.NAME)
        except Exception as exc:  # nor the table of trials: report.json holds them all
            report.setdefault("notes", []).append(f"{trials_csv.NAME} not written: "
                                                  f"{type(exc).__name__}: {exc}")
        tell("writing report.json …")
        write_atomic(run_dir / "report.json", report_json.dumps(report))
        try:
            tell("writing report.md …")
            experiments.write_plots(report.get("experiments", []), run_dir)
            text = markdown.render(report, plugins)
        except Exception as exc:  # report.json is written: the summary must not cost it
            text = (f"# pytest-basht run {run_id}\n\nreport.md could not be rendered "
                    f"({type(exc).__name__}: {exc}); report.json holds every record.\n")
        write_atomic(run_dir / "report.md", text)
        tell("writing report.html …")
        write_html(text, run_dir)
    except OSError:
        if made:
            with contextlib.suppress(OSError):  # not empty: what was written stays
                run_dir.rmdir()
        raise
    if not _point_latest(root, run_id, report):  # the note why goes into report.json too
        write_atomic(run_dir / "report.json", report_json.dumps(report))
    return run_dir


def write_html(markdown_text: str, run_dir: Path) -> None:
    """report.html beside report.md (the same text, pictures embedded); a failure leaves a
    page that says so rather than cost the run its other files."""
    try:
        page = report_html.render(markdown_text, run_dir)
    except Exception as exc:  # report.md and report.json are written: keep them the answer
        page = (f"<!DOCTYPE html><meta charset=\"utf-8\"><p>report.html could not be rendered "
                f"({type(exc).__name__}: {exc}); report.md and report.json hold the report.</p>")
    write_atomic(run_dir / "report.html", page)


def rescue(report: dict[str, Any], wanted: Path, problem: OSError, plugins: Any = None
           ) -> tuple[Path | None, str]:
    """The report directory ``wanted`` failed at the end of the run: write the report to the
    temporary directory instead, so that no measurement is lost; (where, what happened)."""
    what = f"could not write the report to {wanted}: {problem}"
    root = Path(tempfile.gettempdir()) / "basht-reports"
    report.setdefault("notes", []).append(f"{what}; written to {root} instead")
    try:
        return write_report(report, root, plugins), f"{what}; written to {root} instead"
    except OSError as exc:
        return None, f"{what}; nor to {root}: {exc}"
