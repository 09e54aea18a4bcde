"""Zeus's batch size optimizer (BSO) for recurring training jobs.

A recurring job (nightly retraining) trains the same model again and again; Zeus (You,
Chung and Chowdhury, NSDI '23) learns across recurrences which batch size minimises
``cost = η·energy + (1 − η)·P_max·time`` to the target metric. ``bso`` holds the
algorithm as pure functions (the pruning stage, Gaussian Thompson sampling, early
stopping), ``config`` reads it from a workload, ``store`` keeps each job's attempts in
the history store's database (in its own ``tables``), ``sampler`` plugs it into a study
as the ``zeus-bso`` sampler and pruner, ``report`` measures how fast it converges (cost
and regret per recurrence) and draws it, ``section`` shows it in report.md, and
``simulate`` replays a job's recurrences on a trial table. ``plugin`` brings all of it
in through the project's own hooks, as any plugin.
"""
