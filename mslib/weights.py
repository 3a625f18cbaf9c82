"""ImageNet weights through the real mechanism: the torch hub cache, filled from an official URL.

Every backbone with ImageNet weights (Res2Net-50 for M2SNet, VGG-16 for LossNet, ResNet for
DeepLabV3+) is described by a :class:`WeightSpec` (official URL, file name, hash prefix) and
loaded with :func:`load_weights`. The ``pretrained`` argument means (ARCHITECTURE.md,
"Pretrained weights"):

* ``True``: use the ImageNet weights. The file is taken from the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file>``) or downloaded into it; if that fails (offline)
  a :class:`PretrainedWeightsUnavailable` error says which file to download from where and
  where to put it.
* ``False``: random initialisation, nothing is read.
* ``"auto"``: use the weights when they are cached or downloadable, otherwise warn once and
  continue randomly initialised (what the notebooks use).
* a path (``str`` or :class:`os.PathLike` to a ``.pth`` file): load that file.

Downloads are streamed to a temporary file, checked against the hash prefix in the file
name (as torchvision does) and only then moved into the cache. Set ``MSLIB_OFFLINE=1`` to
forbid downloads (``"auto"`` then only uses the cache). Files are read with
``weights_only=True``.

:data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` are the per-channel statistics these weights were
trained with (torchvision's ``transforms.Normalize`` values), the one copy in mslib.

This module sits in the bottom layer (torch only), so losses (LossNet's VGG-16) and models
(Res2Net) can both load weights; :mod:`mslib.models.pretrained` re-exports it.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Pretrained",
    "WeightSpec",
    "PretrainedWeightsUnavailable",
    "WEIGHTS",
    "check_pretrained",
    "cache_path",
    "load_weights",
    "load_state_dict_into",
]

Pretrained = Union[bool, str, os.PathLike]

#: ImageNet per-channel mean and standard deviation (RGB, images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightSpec:
    """Where a set of ImageNet weights lives: ``url`` (official), ``filename`` in the hub cache,
    ``hash_prefix`` (the first hex digits of the file's SHA-256, or ``None``) and a description."""

    name: str
    url: str
    filename: str
    hash_prefix: str | None = None
    source: str = ""


#: torchvision's ``VGG16_Weights.IMAGENET1K_V1.url`` (a test checks that they agree); written out so that
#: importing mslib's losses does not import torchvision (about 200 MB of memory and a second of start-up).
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


WEIGHTS: dict[str, WeightSpec] = {
    "res2net50_v1b_26w_4s": WeightSpec(
        "res2net50_v1b_26w_4s",
        "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_v1b_26w_4s-3cf99910.pth",
        "res2net50_v1b_26w_4s-3cf99910.pth",
        "3cf99910",
        "official Res2Net release (Gao et al., github.com/Res2Net/Res2Net-PretrainedModels)",
    ),
    "vgg16": WeightSpec(
        "vgg16", VGG16_URL, VGG16_URL.rsplit("/", 1)[-1], "397923af", "torchvision VGG16_Weights.IMAGENET1K_V1"
    ),
}


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet weights were asked for (``pretrained=True``) but cannot be read or downloaded."""


def check_pretrained(pretrained: Pretrained, argument: str = "pretrained") -> Pretrained:
    """Validate a ``pretrained`` argument (True, False, "auto" or a path) and return it."""
    if isinstance(pretrained, bool) or pretrained == "auto":
        return pretrained
    if isinstance(pretrained, (str, os.PathLike)):
        p = Path(pretrained).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"{argument}={str(pretrained)!r} is neither True, False nor 'auto', and no such file exists; "
                "pass the path of a downloaded .pth file, or True/False/'auto'"
            )
        return p
    raise TypeError(f"{argument} must be True, False, 'auto' or a path to a .pth file, got {pretrained!r}")


def cache_path(spec: WeightSpec) -> Path:
    """Where the torch hub cache keeps ``spec``'s file (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.filename


def _how_to_get(spec: WeightSpec) -> str:
    return (
        f"download {spec.url} and put it at {cache_path(spec)} (the torch hub cache), "
        f"or pass pretrained='/path/to/{spec.filename}'"
    )


def _download(url: str, dst: Path, hash_prefix: str | None, timeout: float = 20.0) -> None:
    """Stream ``url`` into the cache file ``dst`` via a temporary file, verifying the hash prefix."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:  # torch.hub writes to a temp file, checks the SHA-256 prefix, then renames
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=hash_prefix, progress=False)
    finally:
        socket.setdefaulttimeout(old)


def _offline() -> bool:
    return os.environ.get("MSLIB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def load_weights(spec: WeightSpec | str, pretrained: Pretrained = True) -> dict | None:
    """The state dict of ``spec`` according to ``pretrained`` (see the module docstring).

    Returns ``None`` when the model should stay randomly initialised (``False``, or
    ``"auto"`` without a cached or downloadable file; the latter warns).
    """
    if isinstance(spec, str):
        if spec not in WEIGHTS:
            raise ValueError(f"unknown weights {spec!r}; known: {sorted(WEIGHTS)}")
        spec = WEIGHTS[spec]
    pretrained = check_pretrained(pretrained)
    if pretrained is False:
        return None
    if isinstance(pretrained, Path):
        path = pretrained
    else:
        path = cache_path(spec)
        if not path.is_file():
            error: Exception | None = None
            if _offline():
                error = RuntimeError("downloads are disabled by MSLIB_OFFLINE")
            else:
                try:
                    _download(spec.url, path, spec.hash_prefix)
                except Exception as exc:  # offline, DNS failure, HTTP error, hash mismatch
                    error = exc
            if error is not None:
                if pretrained is True:
                    raise PretrainedWeightsUnavailable(
                        f"ImageNet weights {spec.name!r} are not in the torch hub cache and could not be downloaded "
                        f"({type(error).__name__}: {error}). To fix: {_how_to_get(spec)}; "
                        "or use pretrained='auto' (random initialisation with a warning) or False."
                    ) from error
                warnings.warn(
                    f"pretrained='auto': ImageNet weights {spec.name!r} are not available "
                    f"({type(error).__name__}), so the model is RANDOMLY INITIALISED. "
                    f"To use them: {_how_to_get(spec)}.",
                    stacklevel=3,
                )
                return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedWeightsUnavailable(
            f"could not read the weights file {path} ({type(exc).__name__}: {exc}); delete it and {_how_to_get(spec)}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsUnavailable(f"{path} does not hold a state dict; {_how_to_get(spec)}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state_dict_into(
    module: torch.nn.Module, state: dict, ignore: tuple[str, ...] = (), source: str = "weights"
) -> None:
    """Load ``state`` into ``module`` strictly, except for key prefixes in ``ignore`` (e.g. a classifier).

    Missing or unexpected keys and shape mismatches are an error naming the keys.
    """
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = module.state_dict()
    own = {k: v for k, v in own.items() if not k.startswith(ignore)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        raise RuntimeError(
            f"{source} do not fit {type(module).__name__}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatch {shapes[:5]}; ImageNet weights only fit the default architecture"
        )
    module.load_state_dict(state, strict=False)
