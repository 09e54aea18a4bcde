"""The two pieces of Optuna's private state the replay needs, reached here and nowhere else.

The replay runs many studies' ask/tell loops interleaved in one thread, in virtual time,
instead of calling ``Study.optimize``. Samplers (GridSampler when its grid is exhausted)
call ``study.stop()`` from ``after_trial``, which Optuna allows only inside ``optimize``:
so the replay sets the flag ``optimize`` sets, and reads the flag ``stop`` raises.
``tests/test_optuna_loop.py`` fails loudly when an Optuna upgrade renames either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import optuna


def check(study: optuna.Study) -> None:
    """Refuse an Optuna whose private loop state is not where this module looks."""
    if not hasattr(study, "_stop_flag") or not hasattr(study, "_thread_local"):
        raise RuntimeError(f"optuna {optuna.__version__}: Study has no _stop_flag or "
                           "_thread_local; pytest_basht.simulation.optuna_loop must follow "
                           "Optuna's optimize loop in this version")


def stopped(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called in the loop (GridSampler: the grid is done)."""
    return bool(study._stop_flag)


@contextmanager
def optimize_loop(studies: Sequence[optuna.Study]) -> Iterator[None]:
    """Inside: each study behaves as within ``Study.optimize`` (``stop()`` is allowed)."""
    for study in studies:
        check(study)
        study._thread_local.in_optimize_loop = True
    try:
        yield
    finally:
        for study in studies:
            study._thread_local.in_optimize_loop = False
