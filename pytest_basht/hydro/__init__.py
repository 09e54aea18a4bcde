"""Hydro (Hu et al., OSDI '23) as a plugin: fused and width-scaled trials.

``search.fusion: F`` trains up to F trials of one shape as one model, and
``search.scaling: S`` trains surrogates of width / S with muP's corrections, retraining
the best at full width. ``fused`` holds the fused feed-forward nets and ``mnist-ff`` that
trains them (a ``trainables.group.FusableTrainable``, which the SUT's grouped ask/tell
drives), ``scaling`` muP's rules and the ranking fidelity, ``retrain`` the test phase's
full-width retraining, ``figures`` the scenario's ``hydro`` figures, ``report`` its part
of report.md; ``plugin`` registers them through the project's own hooks, as any plugin.
"""
