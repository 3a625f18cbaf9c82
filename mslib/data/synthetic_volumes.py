"""Synthetic cardiac *volumes*: consecutive short-axis slices of one synthetic heart, with a case id.

The cardiac generator of :mod:`mslib.data.synthetic` draws independent slices. Per-volume
evaluation (MCSC reports Dice and HD95 per volume, then averages) and "K labelled cases" need
whole volumes: here a case is one synthetic patient, and its ``slices`` slices share everything
(body, organs, heart position, shape and wall thickness, noise) except the slice position, which
runs from the base (large rings, right ventricle present) to the apex (small rings, the most
apical 15 % without right ventricle), at one cardiac phase per case. Slice ``i`` of case ``c`` is
drawn by the same generator with the random stream of ``(seed, c)`` and its position set to
``i / (slices - 1)`` (scaled into ``[0.05, 0.95]``).

:func:`generate_volumes` writes the prepared layout with ``dataset.json`` ``"volumes"`` (case ->
slice names in order) and ``"spacing"`` (an assumed 10 x 1.5 x 1.5 mm, ACDC-like), split *by case*
(train/val/test), the train list in case order so that :func:`mslib.data.labelled.labelled_split`
gives "the first K cases", and the splits ``train_labeled_K``/``train_unlabeled_K`` for K in
(1, 3, 7) where the train cases allow. :class:`mslib.data.volumes.VolumeDataset` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mslib import __version__
from mslib.utils import data_dir

from .labelled import labelled_split
from .layout import META, PreparedWriter
from .synthetic import CLASSES, GENERATOR_VERSION, TASKS, _cardiac, _check_int, _check_size

__all__ = ["make_volume", "generate_volumes", "synthetic_volumes", "SPACING"]

#: Assumed voxel spacing of the synthetic volumes, mm (z, y, x), ACDC-like.
SPACING = (10.0, 1.5, 1.5)
_VERSION = 1


class _FixedPosition:
    """A ``numpy.random.Generator`` stand-in whose first two ``uniform`` draws (the cardiac
    generator's slice position and phase) are given; every other call goes to ``rng``."""

    def __init__(self, rng: np.random.Generator, values: tuple[float, float]):
        self._rng, self._values = rng, list(values)

    def uniform(self, *args, **kwargs):
        if self._values:
            return self._values.pop(0)
        return self._rng.uniform(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def make_volume(case: int, slices: int = 8, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic cardiac volume: images (slices, size, size) uint8 and masks (slices, size, size) uint8."""
    case = _check_int(case, "case", 0)
    slices = _check_int(slices, "slices", 2, 64, " (slices per volume)")
    size = _check_size(size)
    seed = _check_int(seed, "seed", 0)
    phase = float(np.random.default_rng([seed, TASKS.index("cardiac"), case, 1]).uniform(0, 1))
    images, masks = [], []
    for i in range(slices):
        pos = 0.05 + 0.9 * i / (slices - 1)
        rng = np.random.default_rng([seed, TASKS.index("cardiac"), case, 0])
        image, mask = _cardiac(_FixedPosition(rng, (pos, phase)), size)
        images.append(image)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def _split_cases(n_cases: int, splits: tuple[float, float, float]) -> dict[str, list[int]]:
    fr = np.asarray(splits, dtype=float)
    if fr.shape != (3,) or np.any(fr < 0) or abs(fr.sum() - 1) > 1e-6:
        raise ValueError(f"splits must be three fractions (train, val, test) summing to 1, got {splits!r}")
    n_val, n_test = int(round(fr[1] * n_cases)), int(round(fr[2] * n_cases))
    n_train = n_cases - n_val - n_test
    if n_train < 1 or (fr[1] > 0 and n_val < 1) or (fr[2] > 0 and n_test < 1):
        raise ValueError(f"n_cases={n_cases} is too few for splits {splits}; use more cases")
    ids = list(range(n_cases))
    return {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}


def generate_volumes(
    root: str | os.PathLike,
    n_cases: int = 20,
    slices: int = 8,
    size: int = 128,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
    overwrite: bool = True,
) -> Path:
    """Write ``n_cases`` synthetic volumes in the prepared layout under ``root`` (see module docstring)."""
    n_cases = _check_int(n_cases, "n_cases", 2, hint=" (number of synthetic patients)")
    by_split = _split_cases(n_cases, tuple(splits))
    volumes: dict[str, list[str]] = {}
    with PreparedWriter(
        root, name="synthetic-cardiac-volumes", classes=CLASSES["cardiac"], channels=1, overwrite=overwrite
    ) as w:
        for c in range(n_cases):
            images, masks = make_volume(c, slices, size, seed)
            names = [f"case{c:03d}_slice_{i}" for i in range(slices)]
            for name, image, mask in zip(names, images, masks):
                w.add(name, image, mask)
            volumes[f"case{c:03d}"] = names
        split_names = {k: [n for c in ids for n in volumes[f"case{c:03d}"]] for k, ids in by_split.items() if ids}
        for k in (1, 3, 7):
            if k < len(by_split["train"]):
                split_names[f"train_labeled_{k}"], split_names[f"train_unlabeled_{k}"] = labelled_split(
                    split_names["train"], k
                )
        w.set_splits(split_names)
        w.meta.update(
            source="synthetic (mslib.data.synthetic_volumes)",
            licence="CC0 (generated)",
            checksum=None,
            volumes=volumes,
            spacing={v: list(SPACING) for v in volumes},
            generator={
                "task": "cardiac-volumes",
                "n_cases": n_cases,
                "slices": slices,
                "size": size,
                "seed": seed,
                "splits": list(splits),
                "version": _VERSION,
                "cardiac_version": GENERATOR_VERSION,
                "mslib_version": __version__,
            },
        )
    return Path(root)


def synthetic_volumes(
    n_cases: int = 20,
    slices: int = 8,
    size: int = 128,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> Path:
    """The cached synthetic volume dataset with these parameters (generated on first use) under ``data_dir()``."""
    path = data_dir() / "synthetic" / f"cardiac-volumes-c{n_cases}-z{slices}-s{size}-seed{seed}"
    want = {
        "n_cases": n_cases,
        "slices": slices,
        "size": size,
        "seed": seed,
        "splits": list(splits),
        "version": _VERSION,
        "cardiac_version": GENERATOR_VERSION,
    }
    try:
        gen = json.loads((path / META).read_text(encoding="utf-8")).get("generator", {})
        if all(gen.get(k) == v for k, v in want.items()):
            return path
    except (OSError, ValueError, AttributeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.gen-", dir=path.parent))
    try:
        built = generate_volumes(tmp / "data", n_cases, slices, size, seed, splits)
        if path.exists():
            shutil.rmtree(path)
        os.replace(built, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
