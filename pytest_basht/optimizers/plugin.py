"""The built-in ask-and-tell optimizers, registered through the project's own hook as any
plugin's. Each library is imported only when a scenario builds its optimizer; a missing
one is a usage error naming the extra to install (``Optimizer.check``)."""

from __future__ import annotations

from pytest_basht.hookspecs import hookimpl


@hookimpl
def pytest_basht_register_optimizers() -> dict[str, type]:
    from pytest_basht.optimizers.dehb_tell import DehbOptimizer
    from pytest_basht.optimizers.optuna_tell import OptunaOptimizer
    from pytest_basht.optimizers.smac_tell import SmacOptimizer
    from pytest_basht.optimizers.synetune_tell import SyneTuneOptimizer

    return {"optuna": OptunaOptimizer, "smac": SmacOptimizer, "dehb": DehbOptimizer,
            "syne-tune": SyneTuneOptimizer}
