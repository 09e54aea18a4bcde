"""Zeus's batch size optimizer (BSO) for recurring training jobs.

A recurring job (nightly retraining) trains the same model again and again; Zeus (You,
Chung and Chowdhury, NSDI '23) learns across recurrences which batch size minimises
``cost = η·energy + (1 − η)·P_max·time`` to the target metric. ``bso`` holds the
algorithm as pure functions (the pruning stage, Gaussian Thompson sampling, early
stopping), ``config`` reads it from a workload, ``store`` keeps each job's attempts in
the history store, ``optuna`` plugs it into a study as the ``zeus-bso`` sampler and
pruner, and ``report`` measures how fast it converges (cost and regret per recurrence).
"""
