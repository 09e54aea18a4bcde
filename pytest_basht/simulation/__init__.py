"""Zero-cost simulation: record a run's trials once, replay HPO on them in virtual time.

``table`` holds the trial-table layout (export from reports, merge, load), ``schedule``
mfhpo-simulator's algorithm on virtual workers, ``replay`` drives Optuna's own samplers
and pruners through it, ``energy`` the virtual clock and energy timeline, ``answers``
picks a recorded curve per configuration, ``surrogate`` predicts unrecorded ones, and
``synthetic`` is a built-in multi-fidelity benchmark with a runtime model.
"""
