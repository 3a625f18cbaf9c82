"""Shared fixtures: an isolated data root for every test, and a tiny prepared dataset."""

from __future__ import annotations

import numpy as np
import pytest

from mslib.data.layout import PreparedWriter


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory):
    """One data root per test session (synthetic datasets are generated once and shared)."""
    return tmp_path_factory.mktemp("mslib-data")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, session_data_dir):
    """Never touch ``~/.cache/mslib``; no progress bars in test output."""
    monkeypatch.setenv("MSLIB_DATA_DIR", str(session_data_dir))
    monkeypatch.setenv("TQDM_DISABLE", "1")


def write_dataset(
    root,
    n: int = 6,
    size: tuple[int, int] = (12, 16),
    classes=("background", "lesion"),
    channels: int = 3,
    seed: int = 0,
    splits=None,
):
    """Write ``n`` random pairs in the prepared layout (default splits: train = first n-2, test = last 2)."""
    rng = np.random.default_rng(seed)
    names = [f"s{i:02d}" for i in range(n)]
    shape = size if channels == 1 else (*size, 3)
    with PreparedWriter(root, name="tiny", classes=list(classes), channels=channels) as w:
        for name in names:
            w.add(
                name, rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, len(classes), size, dtype=np.uint8)
            )
        w.set_splits(splits if splits is not None else {"train": names[:-2], "test": names[-2:]})
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """A 6-sample binary RGB dataset (12x16) in ``tmp_path/tiny``; splits train (4) and test (2)."""
    return write_dataset(tmp_path / "tiny")


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: ``make_dataset(name="d", **kw)`` writes :func:`write_dataset` into ``tmp_path/name``."""

    def make(name: str = "d", **kw):
        return write_dataset(tmp_path / name, **kw)

    return make
