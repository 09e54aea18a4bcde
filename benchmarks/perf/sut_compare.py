"""The Basht baseline on each system under test, side by side: JCT and energy.

Runs the baseline workload (workloads/baseline.yaml) through the library on

* ``optuna``: 4 local workers, the study in a journal file (the default);
* ``optuna+pg``: the same 4 local workers, the study in PostgreSQL (``storage``);
* ``optuna+pg/remote``: the study in PostgreSQL, the 4 slots filled by ``basht worker``
  processes started beside it (``local_workers: 0``; one thread each, as the local
  workers get on this machine's cores) — what workers on other hosts do, on this host;
* ``ray``: a local Ray started at deploy (Tune, OptunaSearch, FIFO),

round-robin for ``--repeats`` rounds, with the same estimate meter, and prints each run
and the medians with their ratio to ``optuna``. Without ``--postgres URL`` a throw-away
PostgreSQL cluster is started on 127.0.0.1 (Debian's binaries, as the tests do).

    python benchmarks/perf/sut_compare.py --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pytest_basht import wiring, workload_files
from pytest_basht import workload as wl
from pytest_basht.energy.estimate import EstimateMeter
from pytest_basht.energy.monitor import EnergyMonitor
from pytest_basht.runner import Deployments, TrialRunner

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("optuna", "optuna+pg", "optuna+pg/remote", "ray")


def workload(variant: str, url: str, round_: int) -> wl.Workload:
    doc = workload_files.read_document(ROOT / "workloads" / "baseline.yaml")
    study = f"cmp-{round_}"
    sut: dict[str, Any] = {
        "optuna": {"name": "optuna"},
        "optuna+pg": {"name": "optuna", "options": {"storage": url, "study": study}},
        "optuna+pg/remote": {"name": "optuna", "options": {
            "storage": url, "study": study, "local_workers": 0, "heartbeat_s": 2}},
        "ray": {"name": "ray"},
    }[variant]
    return wl.from_mapping({**doc, "sut": sut}, str(ROOT / "workloads" / "baseline.yaml"))


def run(variant: str, url: str, round_: int) -> dict[str, Any]:
    w = workload(variant, url, round_)
    workers: list[subprocess.Popen[bytes]] = []
    if variant.endswith("/remote"):
        workers = [subprocess.Popen(
            [sys.executable, "-m", "pytest_basht.cli", "worker", "--storage", url, "--study",
             f"cmp-{round_}", "--threads", "1", "--wait", "300"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(4)]
    monitor = EnergyMonitor(EstimateMeter.from_workload(w), hz=w.energy.sample_hz)
    monitor.start()
    deployments = Deployments(monitor, wiring.registry())
    t0 = time.perf_counter()
    try:
        result = TrialRunner(w, deployments).run()
    finally:
        deployments.close()
        monitor.stop()
        for proc in workers:
            proc.wait(timeout=120)
    wall = time.perf_counter() - t0
    m = result.metrics or result.recompute()
    spans = {s.phase: s.duration_s for s in result.spans}
    grid = {tuple(sorted(t.params.items())) for t in result.trials}
    return {"variant": variant, "jct_s": m.jct_ms / 1e3, "energy_j": m.energy_j,
            "trials": len(result.trials), "grid": len(grid), "dup": m.duplicate,
            "wr_pct": m.wr_pct, "test": result.test_score, "deploy_s": spans.get("deploy", 0.0),
            "undeploy_s": spans.get("undeploy", 0.0), "wall_s": wall,
            "source": result.energy.source}


def line(r: dict[str, Any]) -> str:
    return (f"{r['variant']:<17} JCT {r['jct_s']:7.2f} s  energy {r['energy_j']:7.1f} J  "
            f"deploy {r['deploy_s']:5.2f} s  undeploy {r['undeploy_s']:5.2f} s  trials "
            f"{r['trials']:2d} (grid {r['grid']}, dup {r['dup']})  WR {r['wr_pct']:5.1f} %  "
            f"test {r['test'] if r['test'] is None else round(r['test'], 3)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--postgres", metavar="URL", help="an SQLAlchemy URL of an empty "
                        "database (default: a throw-away local cluster)")
    parser.add_argument("--only", nargs="*", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    server = None
    url = args.postgres
    if url is None and any("pg" in v for v in args.only):
        sys.path.insert(0, str(ROOT / "tests"))
        from postgres import PostgresServer, binaries

        bindir = binaries()
        if bindir is None:
            sys.exit("no PostgreSQL binaries (.ci/install-postgresql), and no --postgres URL")
        server = PostgresServer(bindir).start()
        url = server.create_database("compare")
    try:
        runs: list[dict[str, Any]] = []
        for i in range(args.repeats):
            for variant in args.only:
                runs.append(run(variant, url or "", i))
                print(f"round {i + 1}: {line(runs[-1])}", flush=True)
    finally:
        if server is not None:
            server.stop()
    base = [r for r in runs if r["variant"] == "optuna"]
    print(f"\nmedians of {args.repeats} round(s), energy {runs[0]['source']} (an estimate):")
    for variant in args.only:
        rs = [r for r in runs if r["variant"] == variant]
        jct = statistics.median(r["jct_s"] for r in rs)
        energy = statistics.median(r["energy_j"] for r in rs)
        ratio = ""
        if base and variant != "optuna":
            bj = statistics.median(r["jct_s"] for r in base)
            be = statistics.median(r["energy_j"] for r in base)
            ratio = f"  (×{jct / bj:.2f} JCT, ×{energy / be:.2f} energy of optuna)"
        print(f"{variant:<17} JCT {jct:7.2f} s  energy {energy:7.1f} J{ratio}")


if __name__ == "__main__":
    main()
