"""Small helpers every chapter uses: device choice, seeding, and recording results.

``record(name, value)`` is how a chapter hands a number to the tests: it displays a
JSON payload under a custom MIME type (no scrapbook needed); :func:`read_records`
parses it back from an executed notebook.
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

RECORD_MIME = "application/vnd.mslib.record+json"

__all__ = ["get_device", "seed_everything", "seed_worker", "record", "read_records", "to_jsonable", "data_dir", "RECORD_MIME"]


def get_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Return the device to run on.

    ``"auto"`` (or ``None``) picks CUDA, then Apple MPS, then the CPU. Any other value
    (``"cpu"``, ``"cuda:1"``, a :class:`torch.device`) is used as given, after checking
    that it is available, so a notebook never fails later with an obscure CUDA error.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    if preference is None or preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(preference, str):
        raise TypeError(f"DEVICE must be 'auto' or a device string such as 'cpu', got {preference!r}")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ValueError(f"DEVICE={preference!r} is not a device; use 'auto', 'cpu', 'cuda' or 'mps'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={preference!r} but CUDA is not available here; use DEVICE='auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError(f"DEVICE={preference!r} but MPS is not available here; use DEVICE='auto' or 'cpu'")
    return device


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a seeded CPU generator.

    With ``deterministic=True`` also ask PyTorch for deterministic kernels
    (``torch.use_deterministic_algorithms(True, warn_only=True)``), switch off the cuDNN
    auto-tuner and set ``CUBLAS_WORKSPACE_CONFIG``. Results on CPU and GPU still differ:
    determinism holds per device and library version (PyTorch reproducibility notes).
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"SEED must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def seed_worker(worker_id: int) -> None:  # pragma: no cover - runs in DataLoader workers
    """``worker_init_fn`` for DataLoaders: seed NumPy and ``random`` from torch's seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def to_jsonable(value: Any) -> Any:
    """Convert tensors, NumPy values and containers to JSON types (non-finite floats as strings)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def record(name: str, value: Any) -> None:
    """Record a result of the running notebook so that a test can read it back.

    The value (a number, string, list or dict; tensors and NumPy values are converted) is
    displayed as ``{name: value}`` under the MIME type ``application/vnd.mslib.record+json``
    with a short text fallback. Returns nothing, so that a call ending a cell prints no echo.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("record(name, value): name must be a non-empty string")
    payload = to_jsonable(value)
    json.dumps(payload)  # fail here, not in the test, if it is not serialisable
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({RECORD_MIME: {name: payload}, "text/plain": f"recorded {name} = {payload!r}"}, raw=True)
    except ImportError:  # pragma: no cover - IPython is optional outside notebooks
        pass


def read_records(notebook: str | os.PathLike | dict) -> dict[str, Any]:
    """Read every value a notebook recorded with :func:`record` (last one wins)."""
    if isinstance(notebook, dict):
        nb = notebook
    else:
        with open(notebook, encoding="utf-8") as fh:
            nb = json.load(fh)
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if RECORD_MIME in data:
                out.update(data[RECORD_MIME])
    return out


def data_dir() -> Path:
    """The data root: ``$MSLIB_DATA_DIR`` or ``~/.cache/mslib``."""
    return Path(os.environ.get("MSLIB_DATA_DIR") or Path.home() / ".cache" / "mslib").expanduser()
