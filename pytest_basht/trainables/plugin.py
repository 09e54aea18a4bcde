"""The built-in trainable, registered through the project's own hook as any plugin's."""

from __future__ import annotations

from pytest_basht.hookspecs import hookimpl


@hookimpl
def pytest_basht_register_trainables() -> dict[str, type]:
    from pytest_basht.trainables.fused import FusedMnistFF

    return {"mnist-ff": FusedMnistFF}  # the feed-forward net that can fuse and scale (Hydro)
