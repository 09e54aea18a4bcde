"""Ask-and-tell optimizers: SMAC3, DEHB, Syne Tune and Optuna behind one protocol."""
