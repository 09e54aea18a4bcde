"""The documentation's examples run: every code block of docs/extending.md marked with a
file name (```` ```python file=conftest.py ````) is written to a fresh project and run as
it stands — the trainable, its workload and its test — and ``basht validate`` checks the
workload with and without that conftest."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import only_report

DOCS = Path(__file__).parents[1] / "docs"
FENCE = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```$", re.M | re.S)


def doc_files(name: str) -> dict[str, str]:
    """File name -> text of each marked code block of a document."""
    return {path: body for _lang, path, body in FENCE.findall((DOCS / name).read_text())}


def test_extending_md_marks_its_project_files():
    assert set(doc_files("extending.md")) == {"conftest.py", "workloads/digits.yaml",
                                              "test_digits.py"}


@pytest.mark.slow
def test_the_documented_trainable_runs_and_validates(pytester):
    for path, text in doc_files("extending.md").items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    [sc] = only_report(pytester.path)["scenarios"]
    assert sc["workload"]["model"]["name"] == "digits-sgd" and sc["test_score"] > 0.85
    assert not {"t", "ts", "ta"} & {row[0] for row in sc["table1"]}  # uses = frozenset()

    basht = [sys.executable, "-c", "import sys; from pytest_basht.cli import main; "
             "sys.exit(main())", "validate", "workloads/digits.yaml"]
    unknown = pytester.run(*basht)
    assert unknown.ret == 2
    err = unknown.stderr.str()
    assert "model.name: expected a registered name" in err and "got 'digits-sgd'" in err
    assert "pass --conftest path/to/conftest.py" in err
    known = pytester.run(*basht, "--conftest", "conftest.py")
    assert known.ret == 0, known.stderr.str()
    assert "workloads/digits.yaml: ok (digits; |Φ| = 4, 4 trials, 2 workers)" in \
        known.stdout.str()
