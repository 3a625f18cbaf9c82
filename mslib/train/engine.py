"""The one training engine: ``fit`` and ``evaluate``, used by every chapter, the CLI and the benchmarks.

A method brings a model (or several), a loss and (optionally) parameter groups, a per-batch
transform or its own step function; everything else lives here once:

- extension points: a step function ``step_fn(ctx, batch)`` that sees a :class:`StepContext`
  (epoch, global step, total steps, the models and optimisers), per-step hooks, several
  models with their own optimisers and schedules (cross teaching), several train loaders
  whose batches arrive together (labelled + unlabelled), iteration-based epochs
  (``config.steps_per_epoch``), a custom validation (``evaluate_fn``) and the best epoch's
  weights (``best_metric``). Supervised training (chapters 2, 6), per-image self-supervised
  optimisation (:mod:`mslib.train.selfsup`) and semi-supervised cross teaching all run here;

- optimiser ("sgd" with momentum / Nesterov / weight decay, "adam", "adamw") over parameter
  groups that keep their own learning rates (M2SNet Sec. IV-B: backbone 0.005, rest 0.05);
- per-step warm-up + constant / linear / cosine / poly schedule (:mod:`mslib.train.schedule`);
- gradient clipping (``config.grad_clip``, global L2 norm);
- AMP with ``torch.autocast`` on the model's device type: float16 + ``GradScaler`` on CUDA;
  on the CPU autocast is *off* unless ``config.amp_dtype="bfloat16"`` is asked for
  explicitly (bfloat16 autocast is usually slower than float32 on CPUs);
- a ``tqdm.auto`` bar per epoch with the running loss (``TQDM_DISABLE=1`` or
  ``progress=False`` turn it off), a :class:`History` (list of dicts, CSV on disk);
- a checkpoint after every epoch (``out_dir/last.pt``, written to a temporary file and
  renamed, loadable with ``weights_only=True``) holding models, optimisers, schedulers,
  scaler, epoch, step, history and every RNG state (torch, CUDA, NumPy, Python, the
  DataLoader's generators), so that a resumed run ends with exactly the weights of an
  uninterrupted one (with ``num_workers=0`` or non-persistent workers: DataLoader workers
  are re-seeded from the main process's RNG each epoch; persistent workers keep RNG
  state that no checkpoint can see);
- DDP when launched with ``torchrun`` (:mod:`mslib.train.distributed`): DistributedSampler,
  metrics reduced over ranks, rank 0 alone logs and writes.

Batches are ``(images, masks)``; masks are class indices (B, H, W) int64 or float maps.
Models return logits (B, K, H, W); K = 1 is binary (sigmoid, threshold 0.5), K > 1 is
multi-class (argmax).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mslib.configs import TrainConfig
from mslib.train import distributed as D
from mslib.train.schedule import SCHEDULES, build_scheduler
from mslib.utils import get_device, seed_everything

__all__ = [
    "History",
    "StepContext",
    "fit",
    "evaluate",
    "build_optimizer",
    "autocast_settings",
    "default_metrics",
    "dice_metric",
    "iou_metric",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "OPTIMIZERS",
    "CHECKPOINT",
    "BEST_CHECKPOINT",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
HISTORY_CSV = "history.csv"
_FORMAT = 2

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[["StepContext", Any], Any]  # (ctx, batch) -> loss | (loss, logs) | None


# ---------------------------------------------------------------------------------- history
class History:
    """Per-epoch records of a run (``epoch``, ``train_loss``, ``val_*``, ``lr*``, ``time``)."""

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()):
        self.records: list[dict[str, Any]] = [dict(r) for r in records]

    def append(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, last={self.last})"

    @property
    def last(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records else None

    def keys(self) -> list[str]:
        keys: list[str] = []
        for r in self.records:
            keys += [k for k in r if k not in keys]
        return keys

    def column(self, key: str) -> list[Any]:
        """The values of ``key`` over epochs (``None`` where an epoch lacks it)."""
        return [r.get(key) for r in self.records]

    def best(self, key: str, mode: str | None = None) -> dict[str, Any]:
        """The record with the best ``key``; ``mode`` "max" or "min" (default: "min" for keys containing "loss")."""
        mode = mode or ("min" if "loss" in key else "max")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        rows = [r for r in self.records if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
        if not rows:
            raise KeyError(f"no epoch has a numeric {key!r}; available keys: {self.keys()}")
        pick = min if mode == "min" else max
        return pick(rows, key=lambda r: r[key])

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the records as CSV (one row per epoch, the union of keys as columns); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.keys())
            writer.writeheader()
            writer.writerows(self.records)
        os.replace(tmp, path)
        return path


# ---------------------------------------------------------------------------------- metrics
def _per_class(metric_name: str, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    from mslib import metrics as M  # imported lazily: keeps `import mslib.train` light

    fn = getattr(M, metric_name)
    if logits.shape[1] == 1:
        return fn(torch.sigmoid(logits[:, 0].float()), M.binarize_target(masks), threshold=0.5)
    if masks.ndim == 4:  # one-hot / probability maps
        masks = masks.argmax(1)
    return fn(logits.argmax(1), masks, num_classes=logits.shape[1], include_background=False, reduction="mean")


def dice_metric(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image Dice (B,) of the hard prediction (sigmoid > 0.5, or argmax), mean over foreground classes.

    A class absent from both prediction and mask is NaN and left out of the mean
    (``ignore_empty``, :mod:`mslib.metrics`); an image where every class is absent is NaN and
    left out of the mean over images."""
    return _per_class("dice", logits, masks)


def iou_metric(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image IoU (Jaccard) (B,) of the hard prediction, mean over foreground classes."""
    return _per_class("iou", logits, masks)


def default_metrics() -> dict[str, MetricFn]:
    return {"dice": dice_metric, "iou": iou_metric}


# ---------------------------------------------------------------------------------- pieces
def _check_config(config: TrainConfig) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(
            "config must be a TrainConfig (e.g. mslib.configs.get_config('unet', 'quick')), "
            f"got {type(config).__name__}"
        )
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"config.optimizer={config.optimizer!r}; valid optimizers are {', '.join(map(repr, OPTIMIZERS))}"
        )
    if config.schedule not in SCHEDULES:
        raise ValueError(f"config.schedule={config.schedule!r}; valid schedules are {', '.join(map(repr, SCHEDULES))}")
    if not isinstance(config.epochs, int) or config.epochs < 1:
        raise ValueError(f"config.epochs must be a positive int, got {config.epochs!r}")
    if config.steps_per_epoch is not None and (
        not isinstance(config.steps_per_epoch, int) or config.steps_per_epoch < 1
    ):
        raise ValueError(f"config.steps_per_epoch must be None or a positive int, got {config.steps_per_epoch!r}")
    if config.seed is not None and not isinstance(config.seed, int):
        raise ValueError(f"config.seed must be an int or None, got {config.seed!r}")
    if config.grad_clip is not None and not config.grad_clip > 0:
        raise ValueError(f"config.grad_clip must be None or > 0, got {config.grad_clip!r}")
    if config.amp_dtype not in (None, "float16", "bfloat16"):
        raise ValueError(f"config.amp_dtype must be None, 'float16' or 'bfloat16', got {config.amp_dtype!r}")


def build_optimizer(
    model: nn.Module,
    config: TrainConfig,
    param_groups: Sequence[Mapping] | Callable[[nn.Module], Sequence[Mapping]] | None = None,
) -> torch.optim.Optimizer:
    """The optimiser of ``config`` over ``param_groups`` (default: every trainable parameter at ``config.lr``).

    ``param_groups`` is a list of dicts ``{"params": [...], "lr": ..., "name": ...}`` (any
    optimiser option may be set per group; missing ones come from ``config``) or a callable
    ``model -> groups``. Every trainable parameter must be in exactly one group.
    """
    if callable(param_groups):
        param_groups = param_groups(model)
    if param_groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    else:
        if isinstance(param_groups, Mapping) or not all(isinstance(g, Mapping) for g in param_groups):
            raise TypeError(
                "param_groups must be a list of dicts {'params': [...], 'lr': ...} or a callable model -> list"
            )
        groups = [dict(g) for g in param_groups]
    seen: dict[int, int] = {}
    for i, g in enumerate(groups):
        if "params" not in g:
            raise ValueError(f"param_groups[{i}] has no 'params' key")
        params = g["params"]
        g["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        g.setdefault("lr", config.lr)
        for p in g["params"]:
            if id(p) in seen:
                raise ValueError(
                    f"a parameter appears in param_groups[{seen[id(p)]}] and param_groups[{i}]; "
                    "each parameter must be in exactly one group"
                )
            seen[id(p)] = i
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{len(missing)} trainable parameter(s) are in no param group ({shown}); add a group for "
            "them or set requires_grad=False on the ones to freeze"
        )
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def autocast_settings(device: torch.device, config: TrainConfig) -> tuple[bool, torch.dtype | None, bool]:
    """``(autocast_enabled, dtype, use_grad_scaler)`` for ``device`` under ``config.amp`` / ``config.amp_dtype``.

    CUDA: float16 (or ``amp_dtype``) with a GradScaler for float16. CPU and MPS: off unless
    ``amp_dtype`` is given (bfloat16 autocast on a CPU is usually slower than float32).
    """
    if not config.amp:
        return False, None, False
    if device.type == "cuda":
        dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        return True, dtype, dtype == torch.float16
    if config.amp_dtype is None:
        return False, None, False
    return True, getattr(torch, config.amp_dtype), False


def _autocast(device: torch.device, enabled: bool, dtype: torch.dtype | None):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(x: Any, device: torch.device) -> Any:
    """Tensors (also inside tuples, lists and dicts) on ``device`` as plain tensors (tv_tensors unwrapped)."""
    if isinstance(x, torch.Tensor):
        if type(x) is not torch.Tensor:  # tv_tensors.Image / Mask -> plain tensors (no wrapper overhead)
            x = x.as_subclass(torch.Tensor)
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return tuple(_to_device(v, device) for v in x)
    return x


def _split_batch(batch: Any, device: torch.device) -> tuple:
    if isinstance(batch, Mapping):
        raise TypeError("batches must be (images, masks) tuples, got a dict; return tuples from the dataset")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"batches must be (images, masks) tuples, got {type(batch).__name__}")
    return _to_device(batch, device)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------- RNG state
def _loader_generators(loader: DataLoader | None) -> dict[str, torch.Generator]:
    out: dict[str, torch.Generator] = {}
    if loader is None:
        return out
    candidates = {
        "loader": getattr(loader, "generator", None),
        "sampler": getattr(getattr(loader, "sampler", None), "generator", None),
        "batch_sampler": getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
        "batch_sampler_own": getattr(getattr(loader, "batch_sampler", None), "generator", None),
    }
    ids = set()
    for name, g in candidates.items():
        if isinstance(g, torch.Generator) and id(g) not in ids:
            ids.add(id(g))
            out[name] = g
    return out


def _named_loaders(loader) -> dict[str, Any]:
    if loader is None:
        return {}
    return dict(loader) if isinstance(loader, Mapping) else {"train": loader}


def rng_state(loader: DataLoader | Mapping[str, DataLoader] | None = None) -> dict[str, Any]:
    """Every RNG state that decides the next batches, as tensors and plain types (``weights_only``-safe).

    ``loader``: one DataLoader or a dict of them; their generators (loader, sampler, batch sampler) are saved too.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(pystate, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "loaders": {
            ln: {name: g.get_state() for name, g in _loader_generators(ld).items()}
            for ln, ld in _named_loaders(loader).items()
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any], loader: DataLoader | Mapping[str, DataLoader] | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    for ln, ld in _named_loaders(loader).items():
        gens = _loader_generators(ld)
        for name, g_state in state.get("loaders", {}).get(ln, {}).items():
            if name in gens:
                gens[name].set_state(g_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(dict(payload), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` with ``weights_only=True``; errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and the fix
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RuntimeError(
            f"cannot read checkpoint {path} ({why}); delete it or pass resume=False to start afresh"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise RuntimeError(
            f"{path} is not an mslib training checkpoint (format {_FORMAT}); delete it or pass resume=False"
        )
    return ckpt


def _config_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), default=repr, sort_keys=True)


# ---------------------------------------------------------------------------------- evaluate
def _evaluate(
    model: nn.Module,
    loader: DataLoader,
    metrics: Mapping[str, MetricFn],
    device: torch.device,
    loss_fn: Callable | None,
    amp: tuple[bool, torch.dtype | None],
    reduce: bool,
    progress: bool = False,
) -> dict[str, Any]:
    from mslib import metrics as M  # imported lazily: keeps `import mslib.train` light

    was_training = model.training
    model.eval()
    sums = torch.zeros(len(metrics) + 2, dtype=torch.float64)  # metric sums ..., loss sum, image count
    counts = torch.zeros(len(metrics), dtype=torch.float64)
    per_image: dict[str, list[torch.Tensor]] = {k: [] for k in metrics}
    with torch.no_grad():
        for batch in _progress(loader, progress, desc="evaluate", leave=False):
            images, masks = _split_batch(batch, device)[:2]
            with _autocast(device, *amp):
                logits = model(images)
            logits = logits.float()
            for i, (name, fn) in enumerate(metrics.items()):
                v = fn(logits, masks).detach().float().cpu()
                per_image[name].append(v)
                total, count = M.nan_sum_count(v)  # the one aggregation rule (mslib.metrics)
                sums[i] += total
                counts[i] += count
            if loss_fn is not None:
                sums[-2] += float(loss_fn(logits, masks)) * images.shape[0]
            sums[-1] += images.shape[0]
    model.train(was_training)
    if reduce:
        sums, counts = D.all_reduce_sum(sums), D.all_reduce_sum(counts)
    out: dict[str, Any] = {}
    for i, name in enumerate(metrics):
        out[name] = float(sums[i] / counts[i]) if counts[i] > 0 else float("nan")
    if loss_fn is not None:
        out["loss"] = float(sums[-2] / sums[-1]) if sums[-1] > 0 else float("nan")
    out["per_image"] = {k: torch.cat(v) if v else torch.empty(0) for k, v in per_image.items()}
    return out


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    metrics: Mapping[str, MetricFn] | None = None,
    device: str | torch.device | None = None,
    *,
    loss_fn: Callable | None = None,
    amp_dtype: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean of each metric over all images of ``loader`` (NaN values, e.g. undefined cases, are skipped).

    Returns ``{name: mean, ..., "loss": mean (if loss_fn), "per_image": {name: tensor (N,) or (N, K)}}``.
    ``metrics`` maps names to ``fn(logits, masks) -> per-image tensor``; default Dice and IoU
    of the hard prediction (:func:`default_metrics`). ``device=None`` keeps the model where
    it is. ``amp_dtype`` ("float16" / "bfloat16") runs the forward under autocast.
    """
    dev = _model_device(model) if device is None else get_device(device)
    model.to(dev)
    metrics = default_metrics() if metrics is None else dict(metrics)
    amp = (amp_dtype is not None, getattr(torch, amp_dtype) if amp_dtype else None)
    return _evaluate(model, loader, metrics, dev, loss_fn, amp, reduce=False, progress=progress)


# ---------------------------------------------------------------------------------- fit
def _tqdm_disabled(progress: bool) -> bool:
    env = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return (not progress) or (env not in ("", "0", "false", "no")) or not D.is_main()


def _progress(iterable, progress: bool, **kw):
    if _tqdm_disabled(progress):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kw)


def _group_names(optimizer: torch.optim.Optimizer, prefix: str = "") -> list[str]:
    groups = optimizer.param_groups
    if len(groups) == 1:
        return [f"lr_{prefix}" if prefix else "lr"]
    head = f"lr_{prefix}_" if prefix else "lr_"
    return [f"{head}{g.get('name', i)}" for i, g in enumerate(groups)]


@dataclasses.dataclass
class StepContext:
    """What a step function and a step hook know about the run (one object, updated in place).

    ``epoch`` counts from 0; ``step`` is the global index of the current step (0 for the first
    step of the run, ``total_steps - 1`` for the last), so a ramp-up reads ``ctx.step /
    ctx.total_steps``; ``steps_per_epoch`` as the engine counts them. ``model`` is what the
    step should call (the DDP wrapper under torchrun): one module, or a dict of them when
    ``fit`` was given several models; ``models`` are always the plain modules by name.
    ``optimizers``/``schedulers`` by model name. ``loss_fn`` and ``config`` as given to
    :func:`fit`. A step or hook calls :meth:`stop` to end training after the current step
    (the epoch is then recorded and checkpointed as usual).
    """

    epoch: int
    step: int
    total_steps: int
    steps_per_epoch: int
    model: Any
    models: dict
    optimizers: dict
    schedulers: dict
    loss_fn: Callable | None
    config: TrainConfig
    device: torch.device
    stop_requested: bool = False

    def stop(self) -> None:
        """End training after this step."""
        self.stop_requested = True


def _default_step(ctx: StepContext, batch) -> torch.Tensor:
    if isinstance(ctx.model, Mapping):
        raise TypeError("fit with several models needs a step_fn(ctx, batch) that says how they are trained together")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"batches must be (images, masks) tuples for the default step, got {type(batch).__name__}; "
            "return tuples from the dataset or pass a step_fn"
        )
    return ctx.loss_fn(ctx.model(batch[0]), batch[1])


def _unpack_step(out) -> tuple[torch.Tensor | None, Mapping[str, Any]]:
    if out is None or isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], (out[1] or {})
    raise TypeError(
        f"step_fn must return a loss tensor, (loss, logs) or None (no update this step); got {type(out).__name__}"
    )


def _as_models(model) -> dict[str, nn.Module]:
    if isinstance(model, nn.Module):
        return {"model": model}
    if isinstance(model, Mapping) and model and all(isinstance(m, nn.Module) for m in model.values()):
        return dict(model)
    raise TypeError(f"model must be an nn.Module or a non-empty dict of name -> nn.Module, got {type(model).__name__}")


def _as_loaders(loader) -> tuple[dict[str, Any], bool]:
    if isinstance(loader, Mapping):
        if not loader:
            raise ValueError("train_loader is an empty dict; give one loader or a dict name -> loader")
        return dict(loader), True
    return {"train": loader}, False


def _loader_len(name: str, loader) -> int:
    try:
        return len(loader)
    except TypeError as exc:
        raise ValueError(
            f"train loader {name!r} has no length (IterableDataset); fit needs a map-style dataset "
            "or config.steps_per_epoch"
        ) from exc


class _Batches:
    """One epoch's batches: the first loader sets the pace; the others (and the first, when
    ``config.steps_per_epoch`` asks for more steps than it holds) start over when exhausted.
    Iterators are created afresh at every epoch, so a run resumed at an epoch boundary sees
    exactly the batches of an uninterrupted one."""

    def __init__(self, loaders: dict[str, Any], several: bool, device: torch.device, epoch: int):
        self.loaders, self.several, self.device, self.epoch = loaders, several, device, epoch
        self.restarts = {k: 0 for k in loaders}
        self.iters = {k: self._start(k) for k in loaders}

    def _start(self, name: str):
        sampler = getattr(self.loaders[name], "sampler", None)
        bsampler = getattr(self.loaders[name], "batch_sampler", None)
        for s in (sampler, bsampler):
            if hasattr(s, "set_epoch"):
                s.set_epoch(self.epoch * 1000 + self.restarts[name])
        return iter(self.loaders[name])

    def _next(self, name: str):
        try:
            return next(self.iters[name])
        except StopIteration:
            self.restarts[name] += 1
            self.iters[name] = self._start(name)
            try:
                return next(self.iters[name])
            except StopIteration:
                raise ValueError(f"train loader {name!r} yields no batches; use more data or a smaller batch") from None

    def next(self):
        if self.several:
            return {k: _to_device(self._next(k), self.device) for k in self.loaders}
        return _to_device(self._next("train"), self.device)


def fit(
    model: nn.Module | Mapping[str, nn.Module],
    train_loader: DataLoader | Mapping[str, DataLoader],
    val_loader: DataLoader | None = None,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    config: TrainConfig,
    param_groups: Any = None,
    optim_configs: Mapping[str, TrainConfig] | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    batch_transform: Callable | None = None,
    step_fn: StepFn | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, dict], None]] = (),
    step_hooks: Sequence[Callable[[StepContext, Mapping[str, float]], None]] = (),
    evaluate_fn: Callable[[StepContext, Any], Mapping[str, float]] | None = None,
    best_metric: str | None = None,
    distributed: bool = True,
    identity: Mapping[str, Any] | None = None,
    on_resume: Callable[[Mapping[str, Any]], None] | None = None,
) -> History:
    """Train for ``config.epochs`` epochs; return the :class:`History`. The one training loop of mslib.

    Supervised training needs ``model``, loaders, ``loss_fn`` and ``config``. The same loop runs
    self-supervised per-image optimisation and semi-supervised cross teaching through its
    extension points: a step function with a :class:`StepContext`, per-step hooks, several
    models and optimisers, several train loaders.

    Args:
        model: an ``nn.Module`` returning logits (B, K, H, W), or a dict ``name -> nn.Module``
            (several models, each with its own optimiser and schedule; e.g. cross teaching).
        train_loader: a DataLoader of ``(images, masks)``, or a dict ``name -> DataLoader`` whose
            batches reach the step function together as a dict ``{name: batch}`` (labelled +
            unlabelled streams). The first loader sets the epoch length unless
            ``config.steps_per_epoch`` does; the others start over when exhausted. Under
            torchrun each gets a ``DistributedSampler`` (a custom batch sampler must offer
            ``shard(rank, world)``).
        val_loader: validation batches, evaluated after every epoch (sharded over ranks).
        loss_fn: ``loss(logits, masks) -> scalar`` for the default step (e.g.
            :func:`mslib.losses.dice_bce`); passed to a custom step as ``ctx.loss_fn``.
        config: a :class:`~mslib.configs.TrainConfig` (optimiser, schedule, epochs, AMP, seed;
            ``steps_per_epoch`` for iteration-based training; ``seed=None`` leaves every RNG alone).
        param_groups: ``[{"params": [...], "lr": ...}, ...]`` or ``model -> list``; with several
            models a dict ``name -> groups``. Default: every trainable parameter at the lr.
        optim_configs: with several models, ``name -> TrainConfig`` giving that model's optimiser,
            lr, weight decay and schedule (default ``config`` for all).
        metrics: validation metrics ``name -> fn(logits, masks) -> per-image tensor`` (default
            Dice and IoU), recorded as ``val_<name>`` (``val_<model>_<name>`` with several models).
        out_dir: where ``history.csv``, ``last.pt`` (and ``best.pt``) go; nothing is written if None.
        resume: continue from ``out_dir/last.pt`` if it exists.
        batch_transform: ``(images, masks) -> (images, masks)`` on the device for each training
            batch, before the step (e.g. multi-scale resizing).
        step_fn: ``step_fn(ctx, batch) -> loss | (loss, logs) | None`` replacing the default
            ``loss_fn(ctx.model(images), masks)``. ``logs`` values are averaged per epoch as
            ``train_<key>``; ``None`` skips the update (no backward, no optimiser step).
        device: "auto", "cpu", "cuda", ... (None: where the first model already is).
        progress: a tqdm bar per epoch (``TQDM_DISABLE=1`` turns it off whatever this says).
        callbacks: ``fn(epoch, record)`` after each epoch's checkpoint (epochs count from 1).
        step_hooks: ``fn(ctx, logs)`` after every optimiser step (an EMA teacher, a ramp-up log).
        evaluate_fn: ``fn(ctx, val_loader) -> {name: value}`` replacing the default validation
            (e.g. per-volume metrics of several models); values are recorded as ``val_<name>``.
        best_metric: a record key (e.g. ``"val_dice"``; "min" when it contains "loss", else
            "max"): the models of its best epoch are saved to ``out_dir/best.pt``.
        distributed: allow DDP under torchrun (False: train in this process alone, e.g.
            per-image optimisation inside a distributed evaluation).
        identity: what this run is (model, data, profile, config hash ...): stored in the
            checkpoint and handed back with the checkpoint to ``on_resume`` before anything is loaded.
        on_resume: ``fn(checkpoint)`` called before resuming from ``out_dir/last.pt``: raise to refuse.
    """
    models = _as_models(model)
    _check_config(config)
    for name, c in (optim_configs or {}).items():
        if name not in models:
            raise ValueError(f"optim_configs has {name!r}, which is not a model name ({', '.join(models)})")
        _check_config(c)
    if step_fn is None and not callable(loss_fn):
        raise TypeError("fit needs loss_fn=callable(logits, masks) (or a step_fn)")
    if step_fn is None and len(models) > 1:
        raise TypeError("fit with several models needs a step_fn(ctx, batch) that says how they are trained together")
    started_group = D.init_from_env(device) if distributed else False
    try:
        return _fit(
            models,
            not isinstance(model, nn.Module),
            train_loader,
            val_loader,
            loss_fn=loss_fn,
            config=config,
            param_groups=param_groups,
            optim_configs=dict(optim_configs or {}),
            metrics=metrics,
            out_dir=out_dir,
            resume=resume,
            batch_transform=batch_transform,
            step_fn=step_fn,
            device=device,
            progress=progress,
            callbacks=callbacks,
            step_hooks=step_hooks,
            evaluate_fn=evaluate_fn,
            best_metric=best_metric,
            identity=identity,
            on_resume=on_resume,
        )
    finally:
        if started_group:
            D.cleanup()


def _groups_for(name: str, several: bool, param_groups):
    if not several:
        return param_groups
    if param_groups is None:
        return None
    if not isinstance(param_groups, Mapping):
        raise TypeError("with several models, param_groups must be a dict name -> groups (or callable)")
    return param_groups.get(name)


def _fit(
    models,
    several,
    train_loader,
    val_loader,
    *,
    loss_fn,
    config,
    param_groups,
    optim_configs,
    metrics,
    out_dir,
    resume,
    batch_transform,
    step_fn,
    device,
    progress,
    callbacks,
    step_hooks,
    evaluate_fn,
    best_metric,
    identity,
    on_resume,
) -> History:
    rank, world = D.get_rank(), D.get_world_size()
    first = next(iter(models.values()))
    dev = _model_device(first) if device is None else get_device(device)
    if D.is_distributed() and dev.type == "cuda":
        dev = torch.device("cuda", D.env_world()[2])
    if config.seed is not None:
        seed_everything(config.seed + rank)
    for m in models.values():
        m.to(dev)
    out = Path(out_dir) if out_dir is not None else None
    main = D.is_main()

    loaders, several_loaders = _as_loaders(train_loader)
    loaders = {k: D.distributed_train_loader(v, seed=config.seed or 0) for k, v in loaders.items()}
    lead_name = next(iter(loaders))
    steps_per_epoch = config.steps_per_epoch or _loader_len(lead_name, loaders[lead_name])
    if steps_per_epoch == 0:
        ld = loaders[lead_name]
        raise ValueError(
            f"train_loader yields no batches ({len(ld.dataset)} items, batch_size={ld.batch_size}, "
            f"drop_last={ld.drop_last}); use more data or a smaller batch"
        )
    val_shard, val_sharded = D.shard_loader(val_loader) if val_loader is not None else (None, False)
    metrics = default_metrics() if metrics is None else dict(metrics)

    total_steps = config.epochs * steps_per_epoch
    optimizers, schedulers = {}, {}
    for name, m in models.items():
        c = optim_configs.get(name, config)
        opt = build_optimizer(m, c, _groups_for(name, several, param_groups))
        optimizers[name] = opt
        schedulers[name] = build_scheduler(
            opt, total_steps, c.schedule, int(round(c.warmup_epochs * steps_per_epoch)), c.poly_power, c.min_lr_ratio
        )
    amp_on, amp_dtype, use_scaler = autocast_settings(dev, config)
    scaler = torch.amp.GradScaler("cuda" if dev.type == "cuda" else "cpu", enabled=use_scaler)

    history = History()
    start_epoch, global_step, restored_rng, best = 0, 0, None, None
    ckpt_path = out / CHECKPOINT if out is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        if on_resume is not None:
            on_resume(ckpt)
        missing = [k for k in models if k not in ckpt["models"]]
        if missing:
            raise RuntimeError(
                f"checkpoint {ckpt_path} holds models {sorted(ckpt['models'])}, this run trains "
                f"{sorted(models)}; use another out_dir or pass resume=False"
            )
        try:
            for name, m in models.items():
                m.load_state_dict(ckpt["models"][name])
                optimizers[name].load_state_dict(ckpt["optimizers"][name])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise RuntimeError(
                f"checkpoint {ckpt_path} does not fit this model/optimiser ({exc}); "
                "use another out_dir or pass resume=False"
            ) from exc
        for name in models:
            schedulers[name].load_state_dict(ckpt["schedulers"][name])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("total_steps") != total_steps and main:
            print(
                f"note: {ckpt_path} was written for {ckpt.get('total_steps')} total steps, this run has "
                f"{total_steps}; the learning-rate schedule continues with the new length"
            )
        start_epoch, global_step = int(ckpt["epoch"]), int(ckpt["global_step"])
        history = History(ckpt["history"])
        best = ckpt.get("best")
        states = ckpt["rng"]
        restored_rng = states[rank] if len(states) == world else None
        if restored_rng is None and main:
            print(
                f"note: {ckpt_path} holds RNG states of {len(states)} process(es), this run has {world}; "
                "batches after resuming will differ from an uninterrupted run"
            )
        if main:
            print(f"resumed from {ckpt_path} after epoch {start_epoch}")

    nets: dict[str, nn.Module] = dict(models)
    if D.is_distributed():
        find_unused = bool(config.extra.get("ddp_find_unused_parameters", False))
        nets = {
            k: DistributedDataParallel(
                m, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=find_unused
            )
            for k, m in models.items()
        }
    if restored_rng is not None:  # last: nothing between here and the first batch may draw random numbers
        set_rng_state(restored_rng, loaders)

    ctx = StepContext(
        epoch=start_epoch,
        step=global_step,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        model=nets if several else nets["model"],
        models=models,
        optimizers=optimizers,
        schedulers=schedulers,
        loss_fn=loss_fn,
        config=config,
        device=dev,
    )
    step = step_fn or _default_step
    lr_keys = [(name, _group_names(opt, name if several else "")) for name, opt in optimizers.items()]
    params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()}
    clips = {name: optim_configs.get(name, config).grad_clip for name in models}
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        ctx.epoch = epoch
        for net in nets.values():
            net.train()
        batches = _Batches(loaders, several_loaders, dev, epoch)
        loss_sum, n_batches, n_updates, log_sums = 0.0, 0, 0, {}
        last_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}
        bar = _progress(
            range(steps_per_epoch), progress, desc=f"epoch {epoch + 1}/{config.epochs}", leave=True, dynamic_ncols=True
        )
        for _ in bar:
            batch = batches.next()
            if batch_transform is not None:
                if not isinstance(batch, tuple) or len(batch) < 2:
                    raise TypeError(
                        "batch_transform needs (images, masks) batches; with several loaders, "
                        "transform inside the step_fn"
                    )
                batch = tuple(batch_transform(batch[0], batch[1])) + tuple(batch[2:])
            ctx.step = global_step
            with _autocast(dev, amp_on, amp_dtype):
                loss, logs = _unpack_step(step(ctx, batch))
            if loss is not None:
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"loss is {loss_value} at epoch {epoch + 1}, step {global_step + 1}; "
                        "lower config.lr, set config.grad_clip, or check the data and loss"
                    )
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                for name, opt in optimizers.items():
                    if clips[name] is not None:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(params[name], clips[name])
                for opt in optimizers.values():
                    scaler.step(opt)
                scaler.update()
                last_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in optimizers.items()}
                loss_sum += loss_value
                n_updates += 1
                for sched in schedulers.values():
                    sched.step()
            global_step += 1
            n_batches += 1
            for k, v in (logs or {}).items():
                log_sums[k] = log_sums.get(k, 0.0) + float(v)
            for hook in step_hooks:
                hook(ctx, logs)
            if hasattr(bar, "set_postfix") and n_updates and (n_batches % 5 == 0 or n_batches == steps_per_epoch):
                bar.set_postfix(loss=f"{loss_sum / n_updates:.4f}", refresh=False)
            if ctx.stop_requested:
                break

        sums = D.all_reduce_sum(
            torch.tensor([loss_sum, n_updates, n_batches] + list(log_sums.values()), dtype=torch.float64)
        )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": float(sums[0] / sums[1]) if sums[1] > 0 else float("nan"),
        }
        for i, k in enumerate(log_sums):
            record[f"train_{k}"] = float(sums[3 + i] / sums[2])
        for m in models.values():
            D.broadcast_buffers(m)
        if val_shard is not None:
            if evaluate_fn is not None:
                record.update({f"val_{k}": v for k, v in evaluate_fn(ctx, val_shard).items()})
            else:
                for name, m in models.items():
                    ev = _evaluate(
                        m,
                        val_shard,
                        metrics,
                        dev,
                        loss_fn if step_fn is None else None,
                        (amp_on, amp_dtype),
                        reduce=val_sharded,
                    )
                    prefix = f"val_{name}_" if several else "val_"
                    record.update({f"{prefix}{k}": v for k, v in ev.items() if k != "per_image"})
        for name, keys in lr_keys:
            record.update(dict(zip(keys, last_lrs[name])))
        record["time"] = round(time.perf_counter() - t0, 3)
        improved = False
        if best_metric is not None:
            if best_metric not in record:
                raise KeyError(f"best_metric={best_metric!r} is not in the epoch record ({', '.join(record)})")
            value = record[best_metric]
            lower = "loss" in best_metric
            if (
                isinstance(value, (int, float))
                and math.isfinite(value)
                and (best is None or (value < best["value"] if lower else value > best["value"]))
            ):
                best, improved = {"metric": best_metric, "value": float(value), "epoch": epoch + 1}, True
            record[f"best_{best_metric}"] = best["value"] if best else float("nan")
        history.append(record)
        if hasattr(bar, "set_postfix"):
            shown = {k: f"{v:.4f}" for k, v in record.items() if k.startswith("val_") and isinstance(v, float)}
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", **shown)
            bar.close()

        states = D.all_gather_object(rng_state(loaders))
        if out is not None and main:
            history.to_csv(out / HISTORY_CSV)
            if improved:
                save_checkpoint(
                    out / BEST_CHECKPOINT,
                    {
                        "format": _FORMAT,
                        "epoch": epoch + 1,
                        "best": best,
                        "models": {k: m.state_dict() for k, m in models.items()},
                    },
                )
            save_checkpoint(
                ckpt_path,
                {
                    "format": _FORMAT,
                    "epoch": epoch + 1,
                    "global_step": global_step,
                    "total_steps": total_steps,
                    "models": {k: m.state_dict() for k, m in models.items()},
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                    "scaler": scaler.state_dict(),
                    "history": history.records,
                    "rng": states,
                    "config": _config_json(config),
                    "best": best,
                    "identity": dict(identity) if identity is not None else None,
                },
            )
        D.barrier()
        for cb in callbacks:
            cb(epoch + 1, record)
        if ctx.stop_requested:
            break
    return history
