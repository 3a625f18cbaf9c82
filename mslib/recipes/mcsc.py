"""MCSC and its baselines (CTS, CPS, UNet-LS, UNet-FS): models, projectors, optimisers, loaders from a config.

One function per piece, all from a :class:`mslib.configs.MCSCConfig` (``get_config("mcsc" | "cts" |
"cps" | "unet_ls" | "unet_fs", profile)``; ``cfg.method`` decides):

* :func:`build_models`: ``{"cnn": UNetSSL4MIS, "tra": SwinUNet}`` (MCSC, CTS), ``{"cnn", "cnn2"}``
  (CPS, two UNets), ``{"cnn"}`` (UNet-LS/FS); MCSC adds ``"proj"``, the
  :class:`~mslib.losses.contrastive.MultiScaleContrast` projection heads (trained, own optimiser).
* :func:`optim_configs`: one :class:`~mslib.configs.TrainConfig` per model. Official MCSC (notes
  §4): AdamW, weight decay 5e-4, UNet at ``lr``, Swin-UNet at ``lr * tra_lr_factor`` (1/5) after a
  linear warm-up of ``tra_warmup_iters``, projectors at ``proj_lr``, poly 0.9 per iteration.
  CTS paper: SGD 0.01, momentum 0.9, weight decay 1e-4, poly 0.9 (``MCSCConfig.CTS_PAPER``).
* :func:`build_loaders`: the training slices with the first ``labelled_cases`` cases labelled
  (:func:`mslib.data.labelled.read_labelled_split`: 32/68/136 slices for 1/3/7 ACDC cases), a
  :class:`~mslib.data.samplers.TwoStreamBatchSampler` of ``labeled_bs + unlabeled_bs``, SSL4MIS's
  augmentation (rot90 + flip with p = 0.5, else a rotation of up to 20 degrees with p = 0.25); the
  validation volumes (:class:`~mslib.data.volumes.VolumeDataset`).
* :func:`recipe` puts it together for :func:`mslib.train.fit`; :func:`train` runs it and
  :func:`test` scores each network per volume on the test split (Dice and HD95 per class,
  mean over volumes then classes; :func:`mslib.volume_metrics.evaluate_volumes`).

Validation runs every ``val_every`` iterations (the engine's epoch is ``val_every`` steps), from
``val_after`` on, on the CNN (and the Transformer); the best CNN Dice keeps its weights
(``best.pt`` in ``out_dir`` and :attr:`SemiSupRecipe.validator`), as the official script keeps
model 1's best. UNet-LS/FS use a batch of ``labeled_bs + unlabeled_bs`` labelled slices, so every
method sees the same number of images per step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mslib.configs import MCSCConfig, TrainConfig
from mslib.data import SegmentationFolder, build_transforms
from mslib.data.labelled import read_labelled_split
from mslib.data.samplers import TwoStreamBatchSampler
from mslib.data.synthetic_volumes import synthetic_volumes
from mslib.data.transforms import AUGMENTATIONS
from mslib.data.volumes import VolumeDataset
from mslib.losses.contrastive import MultiScaleContrast
from mslib.models.swin_unet import SwinUNet
from mslib.models.unet_ssl4mis import UNetSSL4MIS
from mslib.train.engine import BEST_CHECKPOINT, fit, load_checkpoint
from mslib.train.semisup import VolumeValidator, cross_teaching_step, mcsc_step, supervised_step
from mslib.utils import data_dir
from mslib.volume_metrics import evaluate_volumes

__all__ = [
    "SemiSupRecipe",
    "dataset_root",
    "build_models",
    "optim_configs",
    "train_config",
    "build_loaders",
    "recipe",
    "train",
    "test",
    "NETWORKS",
    "OFFICIAL_BLOCKS",
]

#: The networks each method trains (the first is "model 1", whose best validation Dice is kept).
NETWORKS = {
    "mcsc": ("cnn", "tra"),
    "cts": ("cnn", "tra"),
    "cps": ("cnn", "cnn2"),
    "unet_ls": ("cnn",),
    "unet_fs": ("cnn",),
}
#: Official BlockConLoss block sizes per scale factor (19 px at 224, 14 px at 28).
OFFICIAL_BLOCKS = {1: 19, 8: 14}


def _check(cfg) -> None:
    if not isinstance(cfg, MCSCConfig):
        raise TypeError(f"config must be an MCSCConfig (get_config('mcsc', 'quick')), got {type(cfg).__name__}")
    if cfg.method not in NETWORKS:
        raise ValueError(f"config.method={cfg.method!r}; valid methods are {', '.join(map(repr, NETWORKS))}")
    if cfg.image_size % 32:
        raise ValueError(
            f"config.image_size={cfg.image_size} must be a multiple of 32 (Swin-UNet: patch 4 and "
            "three mergings; UNet: four poolings); use e.g. 64, 128 or 224"
        )
    if cfg.val_every < 1 or cfg.max_iterations < 1:
        raise ValueError(
            f"config.val_every and config.max_iterations must be >= 1, got {cfg.val_every}, {cfg.max_iterations}"
        )


def dataset_root(cfg, root: str | os.PathLike | None = None) -> Path:
    """The prepared dataset ``cfg.dataset`` names: ``"synthetic"`` (cached cardiac volumes, data seed 0,
    whatever the training seed), a folder, or a name under :func:`mslib.utils.data_dir`."""
    if root is not None:
        return Path(root)
    if cfg.dataset == "synthetic":
        return synthetic_volumes(cfg.synthetic_cases, cfg.synthetic_slices, size=cfg.image_size, seed=0)
    path = Path(cfg.dataset)
    if path.is_dir():
        return path
    path = data_dir() / cfg.dataset
    if not path.is_dir():
        raise FileNotFoundError(
            f"config.dataset={cfg.dataset!r}: no folder {path}; prepare it with "
            f"`python -m data_scripts.{cfg.dataset}` or pass a prepared folder"
        )
    return path


def _unet(cfg, in_channels: int, num_classes: int) -> UNetSSL4MIS:
    return UNetSSL4MIS(in_channels, num_classes, upsampling=cfg.unet_upsampling)


def build_models(cfg, in_channels: int = 1, num_classes: int | None = None) -> dict[str, nn.Module]:
    """The networks of ``cfg.method`` (:data:`NETWORKS`), plus ``"proj"`` (contrast heads) when ``cl_weight > 0``."""
    _check(cfg)
    k = num_classes or cfg.num_classes
    models: dict[str, nn.Module] = {"cnn": _unet(cfg, in_channels, k)}
    if cfg.method in ("mcsc", "cts"):
        models["tra"] = SwinUNet(
            in_channels,
            k,
            embed_dim=cfg.swin_embed_dim,
            num_heads=cfg.swin_num_heads,
            drop_path=cfg.swin_drop_path,
            pretrained=cfg.swin_pretrained,
        )
    elif cfg.method == "cps":
        models["cnn2"] = _unet(cfg, in_channels, k)
    if cfg.method == "mcsc" and cfg.cl_weight > 0:
        a, b = NETWORKS[cfg.method]
        models["proj"] = build_contrast(cfg, models[a], models[b], in_channels)
    return models


def _channels_by_factor(model: nn.Module, size: int, in_channels: int) -> dict[int, int]:
    was = model.training
    model.eval()
    with torch.no_grad():
        _, feats = model(torch.zeros(1, in_channels, size, size), return_features=True)
    model.train(was)
    return {size // f.shape[-2]: f.shape[1] for f in feats}


def build_contrast(cfg, cnn: nn.Module, tra: nn.Module, in_channels: int = 1) -> MultiScaleContrast:
    """The multi-scale contrast (projection heads at ``cfg.cl_scales``) for these two networks."""
    size = cfg.image_size
    block = dict(OFFICIAL_BLOCKS) if cfg.cl_sampling == "official" else cfg.cl_block
    return MultiScaleContrast(
        _channels_by_factor(cnn, size, in_channels),
        _channels_by_factor(tra, size, in_channels),
        scales=cfg.cl_scales,
        hidden=cfg.proj_hidden,
        out_dim=cfg.proj_dim,
        temperature=cfg.temperature,
        balanced=cfg.balanced,
        discard_background=cfg.discard_background,
        cross=cfg.cross_labels,
        start_iteration=cfg.cl_start_iteration,
        sampling=cfg.cl_sampling,
        max_samples=cfg.cl_max_samples,
        block=block,
        legacy_label_order=cfg.legacy_label_order,
    )


def _steps(cfg) -> tuple[int, int]:
    steps = min(cfg.val_every, cfg.max_iterations)
    return math.ceil(cfg.max_iterations / steps), steps


def train_config(cfg) -> TrainConfig:
    """The engine's run config: ``ceil(max_iterations / val_every)`` epochs of ``val_every`` steps, seed, AMP."""
    epochs, steps = _steps(cfg)
    return TrainConfig(
        profile=cfg.profile,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=cfg.labeled_bs + cfg.unlabeled_bs,
        image_size=cfg.image_size,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        schedule="poly",
        poly_power=cfg.poly_power,
        amp=cfg.amp,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
    )


def optim_configs(cfg, names=None) -> dict[str, TrainConfig]:
    """One optimiser config per model (module docstring); ``names`` default: the models of ``cfg.method``."""
    base = train_config(cfg)
    _, steps = _steps(cfg)
    names = names or (NETWORKS[cfg.method] + (("proj",) if cfg.method == "mcsc" and cfg.cl_weight > 0 else ()))
    out: dict[str, TrainConfig] = {}
    for n in names:
        if n == "tra":
            out[n] = _replace(base, lr=cfg.lr * cfg.tra_lr_factor, warmup_epochs=cfg.tra_warmup_iters / steps)
        elif n == "proj":
            out[n] = _replace(base, lr=cfg.proj_lr)
        else:
            out[n] = base
    return out


def _replace(c: TrainConfig, **kw) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(c, **kw)


def train_transform(cfg):
    """SSL4MIS's training augmentation at ``cfg.image_size`` (``AUGMENTATIONS["mcsc"]``): rot90 + flip with
    p = 0.5, else a rotation of up to 20 degrees with p = 0.25, else nothing."""
    return build_transforms(True, cfg.image_size, **AUGMENTATIONS["mcsc"])


def build_loaders(cfg, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"train": DataLoader (two-stream batch sampler), "val": DataLoader over the val volumes,
    "labelled": [...], "unlabelled": [...], "dataset": SegmentationFolder}``."""
    _check(cfg)
    root = dataset_root(cfg, root)
    train_set = SegmentationFolder(root, "train", transform=train_transform(cfg))
    index = {n: i for i, n in enumerate(train_set.names)}
    if cfg.method == "unet_fs":
        labelled, unlabelled = list(train_set.names), []
    else:
        labelled, unlabelled = read_labelled_split(root, cfg.labelled_cases)
    missing = [n for n in labelled + unlabelled if n not in index]
    if missing:
        raise ValueError(
            f"{root}: labelled/unlabelled slices {missing[:3]} are not in the train split; re-prepare the dataset"
        )
    lab_idx, unl_idx = [index[n] for n in labelled], [index[n] for n in unlabelled]
    if cfg.method in ("unet_ls", "unet_fs"):
        sampler = TwoStreamBatchSampler(lab_idx, [], cfg.labeled_bs + cfg.unlabeled_bs, 0, seed=cfg.seed)
    else:
        sampler = TwoStreamBatchSampler(lab_idx, unl_idx, cfg.labeled_bs, cfg.unlabeled_bs, seed=cfg.seed)
    train_loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers)
    val = VolumeDataset(root, "val")
    return {
        "train": train_loader,
        "val": DataLoader(val, batch_size=None),
        "labelled": labelled,
        "unlabelled": unlabelled,
        "dataset": train_set,
        "root": root,
    }


@dataclass
class SemiSupRecipe:
    """What :func:`mslib.train.fit` needs for one method: ``fit(models, **fit_kwargs)``."""

    config: Any
    models: dict[str, nn.Module]
    networks: tuple[str, ...]
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    validator: VolumeValidator | None = None
    data: dict[str, Any] = field(default_factory=dict)


def step_function(cfg):
    """The ``step_fn`` of ``cfg.method`` (:mod:`mslib.train.semisup`)."""
    nets = NETWORKS[cfg.method]
    kw = dict(cps_weight=cfg.cps_weight, cps_rampup=cfg.cps_rampup, cps_iters_per_step=cfg.cps_iters_per_step)
    if cfg.method in ("unet_ls", "unet_fs"):
        return supervised_step(nets[0])
    if cfg.method == "mcsc" and cfg.cl_weight > 0:
        return mcsc_step(
            cfg.labeled_bs,
            nets,
            "proj",
            cl_weight=cfg.cl_weight,
            legacy_double_contrast=cfg.legacy_double_contrast,
            **kw,
        )
    return cross_teaching_step(cfg.labeled_bs, nets, **kw)


def recipe(cfg, root: str | os.PathLike | None = None, models: dict[str, nn.Module] | None = None) -> SemiSupRecipe:
    """Models, loaders, optimiser configs, step function and validation of ``cfg`` (built in this order,
    after seeding with ``cfg.seed``, so that a recipe is the same every time)."""
    _check(cfg)
    torch.manual_seed(cfg.seed)
    data = build_loaders(cfg, root)
    ds = data["dataset"]
    if models is None:
        models = build_models(cfg, ds.channels, ds.num_classes)
    nets = NETWORKS[cfg.method]
    validator = VolumeValidator(
        nets,
        size=cfg.image_size,
        use_spacing=cfg.hd95_in_mm,
        legacy_official=cfg.legacy_metrics,
        after_step=cfg.val_after,
        keep=nets[0],
    )
    fit_kwargs = dict(
        train_loader=data["train"],
        val_loader=data["val"],
        config=train_config(cfg),
        optim_configs=optim_configs(cfg, tuple(models)),
        step_fn=step_function(cfg),
        evaluate_fn=validator,
        best_metric=f"val_{nets[0]}_dice",
    )
    return SemiSupRecipe(cfg, models, nets, fit_kwargs, validator, data)


def train(
    cfg,
    root: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    resume: bool = True,
    load_best: bool = True,
    **fit_overrides,
):
    """Build the recipe and train it with :func:`mslib.train.fit`; returns ``(history, recipe)``.

    ``load_best``: afterwards the models hold the weights of the best validation epoch of model 1
    (when validation ran), as the official script tests its best checkpoint.
    """
    rec = recipe(cfg, root)
    kw = {**rec.fit_kwargs, **fit_overrides}
    history = fit(rec.models, out_dir=out_dir, device=device, progress=progress, resume=resume, **kw)
    best = Path(out_dir) / BEST_CHECKPOINT if out_dir is not None else None
    if load_best and best is not None and best.is_file():  # the best over the whole run, resumed or not
        ckpt = load_checkpoint(best)
        for name, m in rec.models.items():
            m.load_state_dict(ckpt["models"][name])
    elif load_best and rec.validator is not None:
        rec.validator.load_best(rec.models)
    return history, rec


def test(rec: SemiSupRecipe, split: str = "test", networks=None) -> dict[str, dict]:
    """Per-volume Dice/HD95 of each network on ``split`` (``cfg.test_size`` or the training size;
    HD95 in mm unless ``cfg.hd95_in_mm`` is False; official empty-mask conventions if ``cfg.legacy_metrics``)."""
    cfg = rec.config
    volumes = VolumeDataset(rec.data["root"], split)
    size = cfg.test_size or cfg.image_size
    return {
        n: evaluate_volumes(
            rec.models[n], volumes, size=size, use_spacing=cfg.hd95_in_mm, legacy_official=cfg.legacy_metrics
        )
        for n in (networks or rec.networks)
    }
