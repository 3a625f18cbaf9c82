"""``load_dataset(name, split)``: one call for a synthetic or a prepared dataset.

Names:

- ``"synthetic"`` -> ``"synthetic-{default_task}"``;
- ``"synthetic-polyp"``, ``"synthetic-skin"``, ``"synthetic-breast"``, ``"synthetic-cardiac"``:
  generated once by :func:`mslib.data.synthetic.generate` into
  ``data_dir()/synthetic/{task}-n{n}-s{size}-seed{seed}`` (reused while its
  ``dataset.json`` records the same generator parameters; generated into a temporary
  folder and renamed into place, so concurrent or interrupted runs never see half a
  dataset);
- any other name: a prepared dataset at ``root`` or ``data_dir()/name`` (written by
  ``python -m data_scripts.<module>``; see the book appendix "Getting the real datasets").
  A path to a prepared folder also works as a name.

``n``, ``size`` and ``seed`` only apply to synthetic datasets (a notebook can switch
``DATA`` between synthetic and real data without changing the call); resizing real
images is the transform's job.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..utils import data_dir
from .folder import SegmentationFolder
from .layout import META

__all__ = ["load_dataset", "list_datasets", "SYNTHETIC_TASKS", "PREPARERS", "synthetic_path"]

#: The synthetic tasks (kept here so that listing names does not import the generators).
SYNTHETIC_TASKS = ("polyp", "skin", "breast", "cardiac")
_DEFAULT_N, _DEFAULT_SIZE = 300, 128


def _synthetic_names() -> list[str]:
    return ["synthetic"] + [f"synthetic-{t}" for t in SYNTHETIC_TASKS]


def _prepared_under(base: Path) -> list[str]:
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "synthetic" and (p / META).is_file()
    )


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts now: the synthetic ones and the prepared datasets in ``data_dir()``."""
    return _synthetic_names() + _prepared_under(data_dir())


#: Prepared dataset name -> the ``data_scripts`` module that writes it (``python -m data_scripts.<module>``).
#: A plain list kept here so that mslib never imports data_scripts (the dependency runs one way);
#: tests/test_registry_cache.py checks it against every preparer's ``INFO.name``.
PREPARERS = {
    "acdc": "acdc",
    "busi": "busi",
    "covid19-ct": "covid19_ct",
    "cvc-clinicdb": "cvc_clinicdb",
    "digestpath": "digestpath",
    "goals": "goals",
    "isic2016": "isic2016",
    "isic2016-ph2": "isic2016_ph2",
    "isic2017": "isic2017",
    "kvasir-seg": "kvasir_seg",
    "lung-ct": "lung_ct",
    "montgomery": "montgomery",
    "ph2": "ph2",
    "polyp-benchmark": "polyp_benchmark",
    "synapse": "synapse",
}


def _preparation_modules() -> dict[str, str]:
    """Map dataset name -> ``data_scripts`` module (a copy of :data:`PREPARERS`)."""
    return dict(PREPARERS)


def synthetic_path(task: str, n: int = _DEFAULT_N, size: int = _DEFAULT_SIZE, seed: int = 0) -> Path:
    """Where the synthetic dataset with these parameters is cached."""
    return data_dir() / "synthetic" / f"{task}-n{n}-s{size}-seed{seed}"


def _matches(path: Path, task: str, n: int, size: int, seed: int) -> bool:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    gen = meta.get("generator") if isinstance(meta, dict) else None
    from .synthetic import GENERATOR_VERSION

    return (
        isinstance(gen, dict)
        and gen.get("task") == task
        and gen.get("n") == n
        and gen.get("size") == size
        and gen.get("seed") == seed
        and gen.get("version") == GENERATOR_VERSION
    )


def _is_synthetic(path: Path) -> bool:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return not any(path.iterdir()) if path.is_dir() else False  # an empty folder may be filled
    return isinstance(meta, dict) and isinstance(meta.get("generator"), dict)


def _ensure_synthetic(task: str, path: Path, n: int, size: int, seed: int, owned: bool = True) -> Path:
    if _matches(path, task, n, size, seed):
        return path
    from . import synthetic  # lazy: the generators are only needed the first time

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.gen-", dir=path.parent))
    try:
        built = synthetic.generate(task, tmp / "data", n=n, size=size, seed=seed)
        if path.exists():  # stale (other parameters or a broken copy): move it aside first
            if _matches(path, task, n, size, seed):  # another process finished first
                return path
            if not owned and not _is_synthetic(path):
                raise FileExistsError(
                    f"root={path} exists and is not a synthetic dataset; refusing to replace it: "
                    "pass an empty or new folder as root, or leave root=None to use the cache"
                )
            old = tmp / "old"
            os.replace(path, old)
        try:
            os.replace(built, path)
        except OSError:
            if not _matches(path, task, n, size, seed):  # pragma: no cover - concurrent writer with a broken copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_dataset(
    name: str,
    split: str | None = "train",
    transform: Callable | None = None,
    *,
    root: str | os.PathLike | None = None,
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    default_task: str = "polyp",
    validate: bool = True,
) -> SegmentationFolder:
    """Load a dataset by name as a :class:`SegmentationFolder` (see the module docstring).

    Args:
        name: ``"synthetic"``, ``"synthetic-<task>"``, a prepared dataset's name, or a path.
        split: ``"train"``, ``"val"``, ``"test"`` (or any ``splits/*.txt``), or ``None`` for all.
        transform: joint ``transform(image, mask)``, e.g. ``build_transforms(True, 128)``.
        root: folder of the dataset (default ``data_dir()/name``; for synthetic names the
            folder to generate into instead of the cache).
        n, size, seed: synthetic only: number of samples (default 300), image size (128),
            generator seed.
        default_task: the task ``"synthetic"`` stands for.
        validate: passed to :class:`SegmentationFolder`.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise TypeError(f"name must be a dataset name such as 'synthetic-polyp' or 'kvasir-seg', got {name!r}")
    name = str(name) if isinstance(name, str) else os.fspath(name)
    if name == "synthetic":
        if default_task not in SYNTHETIC_TASKS:
            raise ValueError(f"default_task must be one of {SYNTHETIC_TASKS}, got {default_task!r}")
        name = f"synthetic-{default_task}"
    if name.startswith("synthetic-"):
        task = name[len("synthetic-") :]
        if task not in SYNTHETIC_TASKS:
            raise ValueError(f"unknown synthetic dataset {name!r}; choose one of {', '.join(_synthetic_names())}")
        n = _DEFAULT_N if n is None else n
        size = _DEFAULT_SIZE if size is None else size
        for arg, v in (("n", n), ("size", size), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if arg == "seed" else 1):
                raise ValueError(f"{arg} must be a {'non-negative' if arg == 'seed' else 'positive'} int, got {v!r}")
        path = Path(root) if root is not None else synthetic_path(task, n, size, seed)
        _ensure_synthetic(task, path, n, size, seed, owned=root is None)
        return SegmentationFolder(path, split=split, transform=transform, validate=validate)

    path = Path(root) if root is not None else data_dir() / name
    if not (path / META).is_file():
        prepared = _prepared_under(data_dir())
        modules = _preparation_modules()
        module = modules.get(name)
        how = (
            f"`python -m data_scripts.{module} --root {path}`"
            if module
            else f"`python -m data_scripts.<module> --root {path}`"
            + (f" (modules: {', '.join(f'{k} -> {v}' for k, v in sorted(modules.items()))})" if modules else "")
        )
        state = "does not exist" if not path.exists() else f"has no {META}"
        raise FileNotFoundError(
            f"dataset {name!r} not found: {path} {state}. Prepared datasets in {data_dir()}: "
            f"{', '.join(prepared) or 'none'}; synthetic: {', '.join(_synthetic_names())}. "
            f'Prepare it with {how} (see the book appendix "Getting the real datasets"), '
            f"pass root= to its folder, or set MSLIB_DATA_DIR."
        )
    return SegmentationFolder(path, split=split, transform=transform, validate=validate)
