"""The xdist controller's bookkeeping: which scenario each worker is running, and which
were lost with a worker that crashed.

A worker sends each scenario's record home as the test ends, so a crash loses only the
scenario then in flight. pytest-xdist may run a crashed scenario again on another worker
(``--dist loadfile``/``loadscope`` do); its record then clears the loss. The records
merged from all workers go back into collection order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class XdistTracker:
    """The controller's view of its workers: collection order, scenarios in flight, losses."""

    order: list[str] = field(default_factory=list)  # collection order, for merged records
    in_flight: dict[str, str] = field(default_factory=dict)  # scenario test id -> worker
    lost: list[dict[str, Any]] = field(default_factory=list)  # test_id, worker, reason, ...

    def started(self, test_id: str, worker: str) -> None:
        self.in_flight[test_id] = worker

    def ended(self, test_id: str) -> None:
        """A worker's test ended (its record, if any, has come with it)."""
        self.in_flight.pop(test_id, None)

    def crashed(self, test_id: str, worker: str, reason: str) -> None:
        """An xdist worker died running ``test_id``: that test's record is lost, no other."""
        known = self.in_flight.pop(test_id, None) is not None
        for entry in self.lost:
            if entry["test_id"] == test_id:
                entry["reason"] = reason
                return
        self.lost.append({"test_id": test_id, "worker": worker, "reason": reason,
                          "scenario": known})

    def down(self, worker: str, error: Any) -> None:
        """A worker went down; scenarios it had started and not sent back are lost."""
        for test_id, where in list(self.in_flight.items()):
            if where == worker:
                self.crashed(test_id, worker, f"worker {worker} went down: {error}")

    def recovered(self, record: dict[str, Any]) -> list[str]:
        """A scenario's record arrived: a loss of it is cleared (pytest-xdist ran it again);
        a note for each loss cleared."""
        notes = []
        for entry in [e for e in self.lost if e["test_id"] == record["test_id"]]:
            self.lost.remove(entry)
            where = (record.get("placement") or {}).get("worker", "another worker")
            notes.append(f"xdist worker {entry['worker']} crashed while running "
                         f"{entry['test_id']} ({entry['reason']}); pytest-xdist ran it "
                         f"again on {where}, and that run's record is kept")
        return notes

    def in_order(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records merged from xdist workers back in collection order (as given, else)."""
        out = list(records)
        if self.order:
            rank = {test_id: i for i, test_id in enumerate(self.order)}
            out.sort(key=lambda r: rank.get(r["test_id"], len(rank)))
        return out
