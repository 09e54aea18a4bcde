"""Files that are not what they seem (issue 20, class 4): every file pytest-basht reads goes
through ``reading``, which reads a regular file only, within a bound, and never blocks.

Fuzzed (hypothesis) over what a path can name — a regular file of any size around the
limit, a symlink to one, ``/dev/zero``, ``/dev/urandom``, ``/dev/null``, a FIFO with no
writer, a socket, a directory, a dangling symlink, nothing — and over every reader of a
user's file: each answers with its own clear error, at once, and reads no more than its
bound."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest_basht.reading as reading
import pytest_basht.workload_files as workload_files
from pytest_basht import workload as wl
from pytest_basht.energy import carbon
from pytest_basht.errors import BashtUsageError
from pytest_basht.report import assemble
from pytest_basht.report import json as report_json
from pytest_basht.report.history import HistoryError, SessionHistory
from pytest_basht.simulation.table import TableError, TrialTable, read_card

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SPECIAL = ["fifo", "socket", "directory", "dev-zero", "dev-urandom", "dev-null",
           "dangling", "missing"]


@contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a read that blocks (a FIFO) is the fault under test."""

    def stop(*_: Any) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def make(kind: str, path: Path, size: int = 0, via_symlink: bool = False) -> Path:
    """Put a thing of ``kind`` at ``path`` (a symlink to it with ``via_symlink``)."""
    target = path.with_name(path.name + ".target") if via_symlink else path
    if kind == "regular":
        target.write_bytes(b"x" * size)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
        sock.close()  # the socket file stays
    elif kind == "directory":
        target.mkdir()
    elif kind.startswith("dev-"):
        os.symlink(f"/dev/{kind[4:]}", path)
        return path
    elif kind == "dangling":
        os.symlink(path.with_name("nowhere"), path)
        return path
    elif kind == "missing":
        return path
    if via_symlink:
        os.symlink(target, path)
    return path


@given(kind=st.sampled_from(["regular", *SPECIAL]), via_symlink=st.booleans(),
       limit=st.sampled_from([0, 1, 100, 4096, 65536, 65537]),
       delta=st.sampled_from([-2, -1, 0, 1, 2, 70000]))
@FUZZ
def test_read_bytes_reads_a_regular_file_within_its_bound_or_refuses(kind, via_symlink,
                                                                      limit, delta):
    size = max(0, limit + delta)
    with tempfile.TemporaryDirectory() as tmp, within(10):
        path = make(kind, Path(tmp) / "f", size, via_symlink)
        if kind == "regular" and size <= limit:
            assert reading.read_bytes(path, limit) == b"x" * size
            assert reading.read_head(path, 10) == b"x" * min(size, 10)
            assert reading.read_tail(path, 10) == b"x" * min(size, 10)
            return
        with pytest.raises(OSError) as info:
            reading.read_bytes(path, limit)
        if kind == "regular":
            assert info.value.errno == 27 and "larger than" in info.value.strerror  # EFBIG
        elif kind not in ("dangling", "missing"):
            assert isinstance(info.value, reading.RefusedFile)
            assert "not a regular file" in info.value.strerror


def test_a_file_that_says_size_zero_is_still_read_within_its_bound():
    """procfs files report size 0: the bound holds on the bytes read, not the size said."""
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(reading.RefusedFile, match="larger than 10 bytes"):
        reading.read_bytes("/proc/self/maps", 10)
    assert b"[stack]" in reading.read_bytes("/proc/self/maps", 10_000_000)


# -------------------------------------------------------------------- every reader of a file

CSV = "1700000000,100\n"


def _workload(path: Path) -> Any:
    return workload_files.read_document(path)


def _carbon(path: Path) -> Any:
    return carbon.read_series(path)


def _baseline(path: Path) -> Any:
    return report_json.load(path)


def _table(path: Path) -> Any:
    return TrialTable.read(path)


def _card(path: Path) -> Any:
    return read_card(path.with_name("t.csv"))


def _history(path: Path) -> Any:
    return SessionHistory(str(path), path.parent).check()


# (reader, the file's name, what it holds when it is a regular file, its error type)
READERS: list[tuple[Callable[[Path], Any], str, str, type[Exception]]] = [
    (_workload, "w.yaml", "name: a\n", wl.WorkloadError),
    (_carbon, "grid.csv", CSV, BashtUsageError),
    (_baseline, "report.json", json.dumps({"schema_version": 1}), report_json.ReportError),
    (_table, "t.csv", "source,trial,epoch,value,time_s,energy_j,param.x\n", TableError),
    (_card, "t.meta.json", "{}", TableError),
    (_history, "h.sqlite", "", HistoryError),
]


@given(reader=st.sampled_from(READERS), kind=st.sampled_from(SPECIAL),
       via_symlink=st.booleans())
@FUZZ
def test_every_reader_refuses_what_is_not_a_regular_file_at_once(reader, kind, via_symlink):
    read, name, _, error = reader
    with tempfile.TemporaryDirectory() as tmp, within(10):
        path = make(kind, Path(tmp) / name, via_symlink=via_symlink)
        if read is _card and kind in ("dangling", "missing"):
            assert read(path) is None  # no card: the table stands alone
            return
        if read is _history and kind == "missing":
            assert read(path) is None  # a store to be made there
            return
        with pytest.raises(error) as info:
            read(path)
        assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r[1])
def test_every_reader_reads_a_regular_file_through_a_symlink_as_it_is(tmp_path, reader):
    read, name, text, _ = reader
    (tmp_path / "real").write_text(text)
    (tmp_path / name).symlink_to(tmp_path / "real")
    direct = tmp_path / "direct"
    direct.mkdir()
    (direct / name).write_text(text)

    def outcome(path: Path) -> str:
        try:
            return repr(read(path))
        except BashtUsageError as exc:
            return f"{type(exc).__name__}: {str(exc).replace(str(path.parent), '<dir>')}"

    assert outcome(tmp_path / name) == outcome(direct / name)


def test_the_workload_file_kept_in_the_report_is_read_with_a_bound(tmp_path):
    zero = tmp_path / "w.yaml"
    zero.symlink_to("/dev/zero")
    kept = assemble.workload_file(zero)
    assert kept is not None and "not a regular file" in kept["error"]


def test_an_oversized_workload_and_carbon_series_are_refused_by_their_size(tmp_path):
    big = tmp_path / "w.yaml"
    big.write_text("description: '" + "x" * workload_files.MAX_BYTES + "'\n")
    with pytest.raises(wl.WorkloadError, match="at most 1,000,000 bytes"):
        workload_files.read_document(big)
    with open(tmp_path / "grid.csv", "wb") as fh:  # sparse: no disk used
        fh.truncate(carbon.MAX_BYTES + 1)
    with pytest.raises(BashtUsageError, match="larger than 100,000,000 bytes"):
        carbon.read_series(tmp_path / "grid.csv")
