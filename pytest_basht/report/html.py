"""report.html: report.md as one self-contained page a browser opens with no network.

The page is made from report.md's own text, so both say the same: headings, paragraphs,
lists, quotes, code blocks and GitHub tables, in the small subset of Markdown that
``markdown`` writes. Each picture is read from the run directory and embedded as a base64
PNG; the style and the script are inline (no CDN, no http(s) address anywhere). The script
makes every table sortable (click a heading; numbers sort as numbers, ``—`` and ✗ last)
and marks ``<body data-ready="true">`` when it has run. Every table row carries its cells
as a ``title``, so hovering a trial shows its parameters, state, value, energy and error in
full; the tables are report.md's, bounded the same way (trials.csv has every trial).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_IMAGE = re.compile(r"^!\[(?P<alt>.*)\]\((?P<src>[^()\s]+)\)$")
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1f23; }
h1, h2, h3 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 12.5px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; cursor: pointer; user-select: none; white-space: nowrap; }
th[data-order="asc"]::after { content: " ▲"; }
th[data-order="desc"]::after { content: " ▼"; }
tr:hover td { background: #fff8c5; }
table[data-section="ranking"] tr:nth-child(1) td { font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12px; }
code { background: #f6f8fa; padding: 0 .2em; }
blockquote { border-left: 4px solid #d73a49; margin: .5em 0; padding: .2em .8em;
             background: #fff5f5; }
"""

SCRIPT = """
(function () {
  function key(text) {
    var t = text.trim().replace(/^=/, "").replace(/,/g, "");
    if (t === "" || t === "—" || t === "✗") { return [2, 0]; }
    var n = parseFloat(t);
    return isNaN(n) || !/^[-+]?[0-9.]/.test(t) ? [1, t.toLowerCase()] : [0, n];
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var asc = th.getAttribute("data-order") !== "asc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col].textContent), y = key(b.cells[col].textContent);
      if (x[0] !== y[0]) { return x[0] - y[0]; }
      var c = x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("data-order");
    });
    th.setAttribute("data-order", asc ? "asc" : "desc");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.title = "click to sort";
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
  document.body.setAttribute("data-ready", "true");
})();
"""


def _inline(text: str) -> str:
    """`code` and **bold** of one line, everything else escaped."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        code, bold = match.groups()
        out.append(f"<code>{html.escape(code)}</code>" if code is not None
                   else f"<strong>{html.escape(bold)}</strong>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A GitHub table row's cells (``\\|`` is a pipe inside a cell)."""
    parts = _CELL_SPLIT.split(line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def _plain(cell: str) -> str:
    return cell.replace("`", "").replace("**", "")


def _table(lines: list[str], section: str) -> str:
    head = _cells(lines[0])
    rows = [_cells(line) for line in lines[2:]]
    out = [f'<table data-section="{html.escape(section)}"><thead><tr>']
    out += [f"<th>{_inline(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        title = "\n".join(f"{_plain(h) or '·'}: {_plain(c)}" for h, c in zip(head, row,
                                                                             strict=False))
        out.append(f'<tr title="{html.escape(title)}">')
        out += [f"<td>{_inline(c)}</td>" for c in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _image(alt: str, src: str, run_dir: Path) -> str:
    path = run_dir / src
    if "/" in src or not src.endswith(".png") or not path.is_file():
        return f"<p><em>{html.escape(alt)}: {html.escape(src)} is not in the run " \
               "directory</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render(markdown_text: str, run_dir: Path) -> str:
    """report.html from report.md's text; pictures read from ``run_dir``."""
    lines = markdown_text.splitlines()
    body: list[str] = []
    title = "pytest-basht report"
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                       len(lines))
            body.append("<pre>" + html.escape("\n".join(lines[i + 1:end])) + "</pre>")
            i = end + 1
            continue
        if line.startswith("|"):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            body.append(_table(lines[i:end], section))
            i = end
            continue
        heading = re.match(r"^(#{1,4}) (.*)$", line)
        image = _IMAGE.match(line.strip())
        if heading:
            level, text = len(heading.group(1)), heading.group(2)
            if level == 1:
                title = _plain(text)
            if level <= 2:
                section = _slug(_plain(text))
            body.append(f'<h{level} id="{_slug(_plain(text))}">{_inline(text)}</h{level}>')
        elif image:
            body.append(_image(image.group("alt"), image.group("src"), run_dir))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("> "):
            body.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
