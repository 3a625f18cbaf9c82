"""Small helpers every chapter uses: device choice, seeding, and recording results.

``record(name, value)`` is how a chapter hands a number to the tests: it displays a
JSON payload under a custom MIME type (no scrapbook needed); :func:`read_records`
parses it back from an executed notebook.
"""

from __future__ import annotations

import html
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

RECORD_MIME = "application/vnd.mslib.record+json"

__all__ = [
    "get_device",
    "seed_everything",
    "seed_worker",
    "record",
    "read_records",
    "to_jsonable",
    "data_dir",
    "RECORD_MIME",
    "count_parameters",
    "image_to_tensor",
    "optional_import",
    "lazy_exports",
]


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
    displayed as ``{name: value}`` under the MIME type ``application/vnd.mslib.record+json``,
    quietly: the only other representation is an empty, hidden HTML element, so Jupyter, Colab
    and the HTML book (which skips this MIME type, see _config.yml) show the reader nothing,
    while :func:`read_records` reads the value back from the executed notebook. Returns
    nothing, so that a call ending a cell prints no echo.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("record(name, value): name must be a non-empty string")
    payload = to_jsonable(value)
    json.dumps(payload)  # fail here, not in the test, if it is not serialisable
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            hidden = f'<span hidden class="mslib-record">{html.escape(name)}</span>'
            display({RECORD_MIME: {name: payload}, "text/html": hidden}, raw=True)
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
    """The data root: ``$MSLIB_DATA_DIR`` or ``~/.cache/mslib``.

    Raises ``NotADirectoryError`` naming the variable and the fix when the path (or a folder above
    it) exists but is a file; a missing folder is fine (it is created when something is written).
    """
    env = os.environ.get("MSLIB_DATA_DIR")
    path = Path(env or Path.home() / ".cache" / "mslib").expanduser()
    what = f"MSLIB_DATA_DIR={env}" if env else f"the default data folder {path}"
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise NotADirectoryError(
                    f"{what}: {p} is {'a broken link' if not p.exists() else 'a file'}, not a folder; point "
                    "MSLIB_DATA_DIR at a folder (e.g. export MSLIB_DATA_DIR=~/mslib-data), or move the file away"
                )
            break
    return path


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of an ``nn.Module``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def image_to_tensor(image) -> torch.Tensor:
    """An image as a float32 ``(C, H, W)`` tensor: the one image -> tensor conversion of mslib.

    Accepts an ``(H, W)`` / ``(H, W, C)`` array (numpy or PIL; uint8 is divided by 255, other
    dtypes are kept as they are) or an ``(H, W)`` / ``(C, H, W)`` tensor (kept as it is,
    detached). Arrays are copied (PIL gives read-only arrays).
    """
    if isinstance(image, torch.Tensor):
        x = image.detach()
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3:
            raise ValueError(f"image tensor must be (C, H, W) or (H, W), got {tuple(image.shape)}")
        return x.float()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"image array must be (H, W) or (H, W, C), got shape {arr.shape}")
    x = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float()
    return x / 255.0 if arr.dtype == np.uint8 else x


def lazy_exports(package: str, where: dict[str, str], namespace: dict):
    """A module ``__getattr__`` (PEP 562) that imports ``package.<where[name]>`` on first use of ``name``.

    Subpackages list their public names in ``where`` (name -> module; a submodule maps to itself)
    instead of importing every module up front, so that importing one model or block does not load
    the others' dependencies (torchvision, scipy). The value is cached in ``namespace`` (the package's ``globals()``).
    """
    import importlib

    def __getattr__(name: str):
        if name in where:
            module = importlib.import_module(f"{package}.{where[name]}")
            value = module if where[name] == name else getattr(module, name)  # a submodule by its own name
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def optional_import(module: str, extra: str, purpose: str):
    """``importlib.import_module(module)``, or an ImportError naming the pip extra that installs it.

    For dependencies that a block user does not need (``h5py``/``nibabel``: extra ``data``;
    ``matplotlib``/``ipywidgets``: extra ``viz``), e.g.
    ``nib = optional_import("nibabel", "data", "reading NIfTI volumes")``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs {module}, which is not installed: pip install 'mslib[{extra}]' (or pip install {module})"
        ) from exc
