"""report.html: self-contained (pictures inline, no network), sortable, opened in chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from test_ranking import ranked_report

from pytest_basht.report import files
from pytest_basht.report import html as report_html
from pytest_basht.report.format import github_table

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    return files.write_report(ranked_report(tmp), tmp / "reports")


def test_the_page_is_self_contained_and_holds_report_md(run_dir):
    page = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page), \
        "nothing fetched from the network"
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    pngs = sorted(p.name for p in run_dir.glob("*.png"))
    assert len(images) == len(pngs) and all(
        src.startswith("data:image/png;base64,") for src in images)
    md = (run_dir / "report.md").read_text()
    for heading in re.findall(r"^#+ (.*)$", md, flags=re.M):
        assert report_html.html.escape(heading.replace("`", "")) in page.replace(
            "<code>", "").replace("</code>", "")
    assert '<table data-section="ranking">' in page
    # a trial row tells its details on hover
    assert re.search(r'<tr title="#: 0\nworker: 0\nparams: \{&quot;x&quot;:0\}\n'
                     r'state: complete', page)
    assert "<script>" in page and 'setAttribute("data-ready", "true")' in page


def test_a_picture_missing_from_the_run_directory_is_named(tmp_path):
    page = report_html.render("# r\n\n![a plot](gone.png)\n", tmp_path)
    assert "a plot: gone.png is not in the run directory" in page


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium is not installed (.ci/install-chromium installs it; "
                    "CI runs it)")
def test_chromium_opens_the_page_reads_the_ranking_and_takes_a_screenshot(run_dir, tmp_path):
    assert CHROMIUM is not None, "CI is set but chromium is missing: run .ci/install-chromium"
    url = (run_dir / "report.html").as_uri()
    dumped = _chromium(["--dump-dom", url], tmp_path)
    dom = dumped.stdout
    assert '<body data-ready="true">' in dom, dumped.stderr[-2000:]  # the script ran
    table = re.search(r'<table data-section="ranking">(.*?)</table>', dom, flags=re.S)
    assert table is not None
    heads = re.findall(r'<th title="click to sort">(.*?)</th>', table.group(1))
    assert heads[:5] == ["rank", "setup", "runs", "reached", "ETA J"]
    rows = [re.findall(r"<td>(.*?)</td>", row)
            for row in re.findall(r"<tr title=[^>]*>(.*?)</tr>", table.group(1), flags=re.S)]
    assert [r[1] for r in rows] == ["workers.count=2", "workers.count=4", "workers.count=1",
                                    "workers.count=8"]
    assert [r[0] for r in rows] == ["1", "2", "3", "✗"]

    shot = tmp_path / "report.png"
    taken = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path)
    assert shot.exists(), taken.stderr[-2000:]
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, 1280)
    assert image[..., :3].std() > 0.1, "not a blank page"
    # the headings and tables drew dark text on most of the page's height
    dark_rows = (image[..., :3].mean(axis=2) < 0.5).any(axis=1).mean()
    assert dark_rows > 0.3


def test_a_pipe_inside_a_cell_stays_in_its_cell(tmp_path):
    """Table 1's ``|Φ|`` split its row into one cell too many, in report.md and the page."""
    table = github_table([["pS", "|Φ|", "16"], ["x", "already \\| escaped", "1"]],
                         ["symbol", "variable", "value"])
    assert "| pS       | \\|Φ\\|" in table and "already \\| escaped" in table
    page = report_html.render("# r\n\n" + table + "\n", tmp_path)
    assert "<td>pS</td><td>|Φ|</td><td>16</td>" in page
    assert "<td>x</td><td>already | escaped</td><td>1</td>" in page
