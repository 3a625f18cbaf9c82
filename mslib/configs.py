"""Configurations: one dataclass per method, each with a ``quick`` and a ``paper`` profile.

``quick`` runs on 2 CPU cores in about a minute on synthetic data; ``paper`` is the
paper's architecture, resolution, optimiser, schedule, epochs and loss weights (each value
cites the section it comes from). Both go through the same code: a profile is just data.

>>> cfg = get_config("unet", "quick")
>>> cfg = get_config("unet", "paper", epochs=3)      # overrides are checked by name
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

PROFILES = ("quick", "paper")
_REGISTRY: dict[str, type] = {}

__all__ = [
    "PROFILES",
    "TrainConfig",
    "M2SNetConfig",
    "MSFormerConfig",
    "UNetConfig",
    "register",
    "get_config",
    "available_methods",
    "check_profile",
    "unused_fields",
    "MCSCConfig",
    "CTSConfig",
    "CPSConfig",
    "UNetLSConfig",
    "UNetFSConfig",
    "ABLATIONS",
]


def register(name: str) -> Callable[[type], type]:
    """Class decorator: register a config dataclass with ``quick()`` and ``paper()`` classmethods."""

    def deco(cls: type) -> type:
        for p in PROFILES:
            if not callable(getattr(cls, p, None)):
                raise TypeError(f"config {cls.__name__} needs a classmethod {p}()")
        _REGISTRY[name] = cls
        return cls

    return deco


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def check_profile(profile: str) -> str:
    """Return ``profile`` or raise a ValueError that lists the valid profiles."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(map(repr, PROFILES))}")
    return profile


def get_config(method: str, profile: str = "quick", **overrides):
    """The config of ``method`` for ``profile``, with keyword overrides checked by name."""
    check_profile(profile)
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; known methods are {', '.join(map(repr, available_methods()))}")
    cfg = getattr(_REGISTRY[method], profile)()
    names = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown config field(s) {bad} for {method!r}; valid fields: {sorted(names)}")
    cfg = dataclasses.replace(cfg, **overrides)
    unused = unused_fields(cfg)
    ignored = {k: unused[k] for k in overrides if k in unused}
    if ignored:
        why = "; ".join(f"{k}: {reason}" for k, reason in ignored.items())
        raise ValueError(f"override(s) that this {method!r} config would ignore: {why}")
    return cfg


def unused_fields(cfg) -> dict[str, str]:
    """Fields of ``cfg`` that its other settings make irrelevant, with the reason (an override of one is an error).

    A config may add its own rules with a method ``_unused_fields() -> dict``.
    """
    out: dict[str, str] = {}
    if isinstance(cfg, TrainConfig):
        if cfg.optimizer != "sgd":
            out["momentum"] = out["nesterov"] = f"only optimizer='sgd' uses it (optimizer is {cfg.optimizer!r})"
        if cfg.schedule != "poly":
            out["poly_power"] = f"only schedule='poly' uses it (schedule is {cfg.schedule!r})"
        if cfg.schedule == "constant":
            out["min_lr_ratio"] = "schedule='constant' never decays"
        if not cfg.amp:
            out["amp_dtype"] = "amp is False"
    extra = getattr(cfg, "_unused_fields", None)
    if callable(extra):
        out.update(extra())
    return out


@dataclass
class TrainConfig:
    """Options of :func:`mslib.train.engine.fit` shared by every supervised method."""

    profile: str = "quick"
    epochs: int = 5
    batch_size: int = 8
    image_size: int = 128
    optimizer: str = "adamw"  # "sgd" | "adam" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "constant" | "linear" | "cosine" | "poly"
    warmup_epochs: float = 0.0
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    amp: bool = True  # autocast on the model's device type: fp16 + GradScaler on CUDA
    amp_dtype: str | None = (
        None  # None: fp16 on CUDA, off on CPU/MPS; "bfloat16"/"float16" force autocast (also on CPU)
    )
    num_workers: int = 0
    seed: int | None = 0  # None: fit leaves every RNG as it finds it
    steps_per_epoch: int | None = None  # iteration-based training: an "epoch" is this many steps (loaders cycle)
    extra: dict = field(default_factory=dict)


# ---- method configs are added below, one dataclass per method ---------------------


@register("m2snet")
@dataclass
class M2SNetConfig(TrainConfig):
    """MSNet / M2SNet (Zhao et al.): model, loss (Eq. 4) and training recipe (Sec. IV-C).

    :mod:`mslib.recipes.m2snet` builds the model, the loss, the two learning-rate groups and
    multi-scale resizing from it. ``lr`` is the rate of everything but the backbone; the
    Res2Net backbone trains at ``lr * backbone_lr_ratio``.

    ``paper``: Res2Net-50 v1b with ImageNet weights, 352 x 352 input, multi-scale training (a random
    size per batch from {224, 256, 288, 320, 352}), horizontal flip and rotation, SGD (momentum
    0.9, weight decay 5e-4), learning rate 0.05 with the backbone at 0.005 (ratio 0.1; the
    official grouping silently puts everything at 0.05, which ``legacy_lr_groups=True``
    reproduces), warm-up then linear decay, batch 16, 50 epochs (polyps; 200 COVID-19 CT, 100
    breast ultrasound and OCT). The paper gives no warm-up length; we warm up for half of
    training, the official code's triangular schedule (peak in the middle epoch) applied per step.
    ``lossnet_weight`` (lambda of L_f in Eq. 4): 1, the paper's Eq. 4; the official code uses 0.1.

    ``quick``: synthetic polyps at 96 px, a narrow shallow Res2Net (``backbone_width=0.25``, one
    block per stage), ``channels=32``, no ImageNet weights, AdamW at 2e-3 for both groups, 6
    epochs, LossNet off (its VGG-16 costs several times the narrow model per step at 96 px;
    chapter 6 measures it).
    """

    # model (mslib.models.m2snet.M2SNet)
    unit: str = "msu"  # "msu" M2SNet | "su" MSNet | "au" | "msu_aspp" | "msu_denseaspp"
    orders: tuple | None = None  # n of MS_n^i summed in CE^i (Eq. 3); None: all
    wiring: str = "official"  # "official" (27,692,329 params) | "eq3"
    channels: int = 64  # reduced width (Sec. III)
    pretrained: object = "auto"  # ImageNet Res2Net: True | False | "auto" | path
    backbone_width: float = 1.0
    backbone_layers: tuple = (3, 4, 6, 3)
    in_channels: int = 3
    num_classes: int = 1
    unit_kwargs: dict = field(default_factory=dict)  # e.g. {"mode": "depthwise"} for the MSU
    # loss (Eq. 4)
    lossnet_weight: float = 1.0  # paper Eq. 4: 1; official code: 0.1
    lossnet_pretrained: object = "auto"
    lossnet_resize: int | None = None  # official: 224
    legacy_bce: bool = False  # official unweighted BCE (reduce='none' bug)
    # optimisation: two parameter groups (Sec. IV-C): the head at lr, the backbone at lr * backbone_lr_ratio
    backbone_lr_ratio: float = 0.1
    legacy_lr_groups: bool = False  # official: the backbone group is empty, everything trains at lr
    # data
    multiscale_sizes: tuple | None = (224, 256, 288, 320, 352)
    hflip: float = 0.5
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation] (official loader)
    normalize: str = "imagenet"  # ImageNet mean/std (the backbone's)

    def _unused_fields(self) -> dict[str, str]:
        out = {}
        if self.legacy_lr_groups:
            out["backbone_lr_ratio"] = "legacy_lr_groups=True trains the backbone at lr too"
        if self.lossnet_weight == 0:
            for k in ("lossnet_pretrained", "lossnet_resize"):
                out[k] = "lossnet_weight is 0 (LossNet off)"
        return out

    @classmethod
    def paper(cls) -> M2SNetConfig:
        return cls(
            profile="paper",
            epochs=50,
            batch_size=16,
            image_size=352,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            nesterov=False,
            weight_decay=5e-4,
            schedule="linear",
            warmup_epochs=25.0,
            amp=True,
            pretrained="auto",
            lossnet_pretrained="auto",
            lossnet_weight=1.0,
            backbone_lr_ratio=0.1,
            multiscale_sizes=(224, 256, 288, 320, 352),
        )

    @classmethod
    def quick(cls) -> M2SNetConfig:
        return cls(
            profile="quick",
            epochs=6,
            batch_size=8,
            image_size=96,
            optimizer="adamw",
            lr=2e-3,
            weight_decay=1e-4,
            schedule="cosine",
            warmup_epochs=0.5,
            channels=32,
            pretrained=False,
            backbone_width=0.25,
            backbone_layers=(1, 1, 1, 1),
            lossnet_pretrained="auto",
            lossnet_weight=0.0,
            backbone_lr_ratio=1.0,
            multiscale_sizes=None,
            rotation=10.0,
        )


@register("msformer")
@dataclass
class MSFormerConfig:
    """MS-Former self-supervised per-image segmentation (MS-Former Sec. 2-3; :mod:`mslib.train.selfsup`).

    Paper values: 2 blocks per branch, BN after each block, patch sizes 1 and 2 (Sec. 3.1);
    SGD lr 0.1, momentum 0.9, at most 50 iterations per image (Sec. 3.1); lambdas (1, 2, 1.2)
    (Appendix A grid search; the paper also states (1, 5, 1.2); the official code uses
    (1, 2.0, 1.2) and (1, 1.5, 1.3)); shift 2 horizontally and vertically (Appendix A);
    k-means K = 3 for skin, 2 for lung (Table 1). From the official code (the paper does not say):
    n_clusters 100 (maximum), stop at 3 distinct clusters, 257 px input.

    Five defaults are not the published run, all within the paper's method (the paper fixes
    neither K nor the Mix-FFN width nor the stopping count): ``out_norm=True`` (the score map is
    ``softmax(BN(z))``, the ``BN(z)`` that Eq. 7 already puts on the output), ``n_clusters=10``,
    ``mlp_ratio=2``, and the schedule, loss weight and stopping rule tuned on dermoscopy (24
    synthetic dermoscopy images with lesions of 5-80 % of the image, seed 123, and the even half of
    the team's ISIC 2016 crops): ``lr=0.3`` (paper 0.1), ``lambdas=(1, 2, 0.6)`` (paper 1.2 for
    lambda3) and ``min_clusters=2`` (official code 3), so that a split lesion merges within the 50
    steps while a small lesion keeps its own cluster. As in the official code, the input is scaled
    to [0, 1] (``standardize=False``; ``color_space="lab"`` was tried and lost). Why, and how they
    compare with the published setting (``MSFormerConfig.PUBLISHED``) on held-out synthetic and
    real images: book chapters 9 and 9b and the Benchmarks page.

    These values are the one source of the MS-Former defaults: :class:`mslib.models.MSFormer`
    and :func:`mslib.losses.joint_loss` use the same ones (a test checks that they agree).
    """

    profile: str = "quick"
    image_size: int = 128  # working resolution (square); maps are resized back for evaluation
    n_clusters: int = 10  # K output channels = maximum number of clusters (official: 100)
    dim: int = 32  # token width d of both branches
    depth: int = 2  # blocks per branch (Sec. 3.1)
    heads: int = 1  # official code forces 1 head
    mlp_ratio: float = 2.0  # Mix-FFN hidden width / dim (official: 4)
    patch_embed: str = "conv3x3"  # "conv3x3" (overlapping, official) | "patch" (non-overlapping)
    intra_dim: int = 64
    intra_grid: int = 8  # 8 x 8 = 64 intra-scale tokens, as the official code
    intra_cell: int = 4
    shift: int = 2  # Appendix A: shift 2; official: 1
    shift_mode: str = "hv"  # "hv" (paper) | "diagonal" (official)
    lambdas: tuple = (1.0, 2.0, 0.6)  # (CE, inter, intra), Eq. 10 (Appendix A grid search: (1, 2, 1.2))
    inter_mode: str = "matrix"  # "matrix" (Eq. 5) | "rowwise" (official)
    inter_blocks: str = "all"  # "all" | "last" (official)
    intra_reduction: str = "mean"  # "mean" (official) | "sum" (Eq. 9 literally)
    lr: float = 0.3  # paper 0.1; see the docstring
    momentum: float = 0.9
    max_iters: int = 50
    min_clusters: int = 2  # early stop when the argmax map has at most this many clusters (official: 3)
    color_space: str = "rgb"  # "rgb" (paper, official) | "lab" (CIE Lab scaled to about [0, 1])
    standardize: bool = False  # True: per-image, per-channel zero mean / unit variance; False: [0, 1] (official)
    out_norm: bool = True  # score map S = softmax(BN(z)) (the BN(z) of Eq. 7); published: softmax(z)
    kmeans_k: int = 3  # baseline (Table 1): 3 for skin, 2 for lung
    seed: int = 0

    #: the published loss setting (MS-Former Appendix A, official code):
    #: use with ``dataclasses.replace(cfg, **PUBLISHED)``
    PUBLISHED = {
        "out_norm": False,
        "lambdas": (1.0, 2.0, 1.2),
        "n_clusters": 100,
        "mlp_ratio": 4.0,
        "lr": 0.1,
        "min_clusters": 3,
        "standardize": False,
    }

    @classmethod
    def quick(cls) -> MSFormerConfig:
        return cls(profile="quick", image_size=128)

    @classmethod
    def paper(cls) -> MSFormerConfig:
        return cls(profile="paper", image_size=257)


@register("unet")
@dataclass
class UNetConfig(TrainConfig):
    """UNet baseline (Ronneberger et al., MICCAI 2015; M2SNet Fig. 1 (a)), built by :class:`mslib.models.unet.UNet`.

    This is a *baseline*, not a reproduction of a table: no paper in this book trains a
    UNet with its own recipe. ``paper`` keeps the 2015 architecture (widths 64 .. 1024,
    four poolings, batch norm added) at M2SNet's polyp resolution (352 px, M2SNet
    Sec. IV-B) and its augmentation (flip, rotation), trained with the common modern UNet
    recipe: Adam at 1e-4 (the 2015 paper used SGD with momentum 0.99 on single large
    tiles), cosine decay, Dice + BCE loss, batch 16, 50 epochs (M2SNet's polyp budget),
    AMP on a GPU.

    ``quick``: synthetic polyps generated at 64 px, base width 8 (widths 8 .. 128, 0.49 M
    parameters), AdamW at 3e-3 with cosine decay, 15 epochs of 210 images (390 steps):
    validation Dice about 0.76 after about 30 s of CPU time (measured; 96 px / width 16
    reached only 0.64 in 6 epochs, and more epochs at that size cost minutes).
    """

    # model
    base_channels: int = 16
    depth: int = 4
    norm: str = "batch"
    dropout: float = 0.0
    loss: str = "dice_bce"  # "dice_bce" (binary) | "dice_ce" (multi-class) | "bce" | "ce"
    # data (used by the CLI and the chapter)
    synthetic_n: int = 300  # synthetic datasets only: number of generated images (70/15/15 split)
    hflip: float = 0.5
    vflip: float = 0.0
    rotation: float = 0.0  # degrees

    @classmethod
    def quick(cls) -> UNetConfig:
        return cls(
            profile="quick",
            epochs=15,
            batch_size=8,
            image_size=64,
            optimizer="adamw",
            lr=3e-3,
            weight_decay=1e-4,
            schedule="cosine",
            warmup_epochs=0.3,
            base_channels=8,
            depth=4,
            synthetic_n=300,
            hflip=0.5,
            vflip=0.5,
            rotation=0.0,
        )

    @classmethod
    def paper(cls) -> UNetConfig:
        return cls(
            profile="paper",
            epochs=50,
            batch_size=16,
            image_size=352,
            optimizer="adam",
            lr=1e-4,
            weight_decay=0.0,
            schedule="cosine",
            warmup_epochs=1.0,
            amp=True,
            base_channels=64,
            depth=4,
            synthetic_n=1000,
            hflip=0.5,
            vflip=0.0,
            rotation=10.0,
        )


@register("mcsc")
@dataclass
class MCSCConfig:
    """MCSC (Liu et al., BMVC 2023): cross teaching of a CNN (SSL4MIS UNet) and a Transformer
    (Swin-UNet) with the multi-scale balanced contrastive loss; semi-supervised, by iteration.

    ``paper`` is the official run (``train_acdc_unet_semi_seg.sh``, ``train_MCSC_2D_256_28.py``;
    notes §4): ACDC at 224 px, 7 labelled cases, batch 2 labelled + 2 unlabelled, 40,000
    iterations; AdamW (weight decay 5e-4) with three groups: UNet + its classifier at ``lr``
    (5e-4, poly 0.9 per iteration), Swin-UNet at ``lr / 5`` with a linear warm-up of about 1,972
    iterations (max_epoch / 20 epochs) then poly, projectors at 5e-4 (poly); CE + Dice supervised,
    cross pseudo supervision weighted 0.1 exp(-5 (1 - t/200)^2), t = iteration // 150; contrastive
    weight 0.001 on full resolution and 1/8 ("256 + 28", Tab. A2), temperature 0.1, labelled-only
    contrast before iteration 3000; validation every 200 iterations after 1,000. The official
    contrast tiles 19/14-px blocks (``cl_sampling="official"``); here ``"anchors"`` (4,096
    sampled pixels per scale) is the default, which covers the whole image.

    ``CTS_PAPER`` holds the CTS baseline's values (SGD 0.01, momentum 0.9, weight decay 1e-4,
    poly 0.9, batch 8 + 8, 30,000 iterations, no contrast):
    ``dataclasses.replace(get_config("mcsc", "paper"), **MCSCConfig.CTS_PAPER)``.

    ``quick``: synthetic cardiac volumes (20 cases of 8 slices, 64 px; 14 training cases of which
    the first ``labelled_cases`` are labelled), batch 4 + 4, 150 iterations, the same optimiser
    groups at higher rates, a narrower Swin-UNet (``swin_embed_dim`` 24, heads 1-2-4-8), contrast
    from iteration 50, 1,024 sampled pixels per scale.

    ``method`` selects what :mod:`mslib.recipes.mcsc` trains (one registered config each, same
    fields): ``"mcsc"``; ``"cts"`` (UNet + Swin-UNet, no contrast; ``paper`` = ``CTS_PAPER``);
    ``"cps"`` (two UNets, cross pseudo supervision); ``"unet_ls"`` (the UNet on the labelled
    slices only); ``"unet_fs"`` (the UNet on every training slice, labelled). In ``quick`` every
    method keeps MCSC's optimiser groups and budget, so a difference is the method's.
    :data:`ABLATIONS` holds the rows of Tab. A1 (cumulative: SCL, +DB, +CroLab, +Balanced,
    +MulSca) and Tab. A2 (the contrasted scales) as overrides of the ``mcsc`` config.
    ``legacy_double_contrast=True``: the official script adds the contrastive term to both
    networks' losses and back-propagates their sum, so it counts twice.
    """

    profile: str = "quick"
    image_size: int = 224
    num_classes: int = 4
    labelled_cases: int = 7
    labeled_bs: int = 2
    unlabeled_bs: int = 2
    max_iterations: int = 40_000
    # optimisation (three groups)
    optimizer: str = "adamw"  # "adamw" (MCSC) | "sgd" (CTS)
    lr: float = 5e-4  # UNet + classifier
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    tra_lr_factor: float = 0.2  # Swin-UNet at lr / 5
    tra_warmup_iters: int = 1972  # linear warm-up of the Swin-UNet's lr (max_epoch / 20 epochs)
    proj_lr: float = 5e-4
    poly_power: float = 0.9
    amp: bool = True
    # models
    unet_upsampling: str = "bilinear"  # what the official code runs (1,813,764 parameters)
    swin_pretrained: bool | str = "auto"
    swin_drop_path: float = 0.2
    # cross teaching
    cps_weight: float = 0.1
    cps_rampup: float = 200.0
    cps_iters_per_step: int = 150
    # contrast (weight 0 turns it off: CTS)
    cl_weight: float = 0.001
    cl_scales: tuple[int, ...] = (1, 8)  # down-sampling factors: 1 = 224 px, 8 = 28 px (Tab. A2's best)
    cl_start_iteration: int = 3000
    temperature: float = 0.1
    proj_hidden: int = 256
    proj_dim: int = 128
    cl_sampling: str = "anchors"  # "all" | "anchors" | "blocks" | "official"
    cl_max_samples: int = 4096
    cl_block: int = 16  # "blocks"; "official" uses 19 px at 224 and 14 px at 28
    balanced: bool = True
    discard_background: bool = True
    cross_labels: bool = True
    legacy_label_order: bool = False
    # validation / test
    val_every: int = 200
    val_after: int = 1000
    test_size: int | None = None  # official: 256 (slices tested at 256 after training at 224)
    hd95_in_mm: bool = True  # False: voxel units, as the official script
    legacy_metrics: bool = False  # official empty-mask conventions (HD95 0 for an empty prediction)
    # data
    synthetic_cases: int = 20
    synthetic_slices: int = 8
    seed: int = 0
    # method (one registered config each) and what phase 2 adds
    method: str = "mcsc"  # "mcsc" | "cts" | "cps" | "unet_ls" | "unet_fs"
    dataset: str = "synthetic"  # "synthetic" (cardiac volumes) or a prepared dataset name / folder
    swin_embed_dim: int = 96  # swin-tiny; quick: 24
    swin_num_heads: tuple[int, ...] = (3, 6, 12, 24)
    legacy_double_contrast: bool = False  # official: the contrastive term enters both networks' losses (x2)
    num_workers: int = 0

    METHODS = ("mcsc", "cts", "cps", "unet_ls", "unet_fs")
    CTS_PAPER = {
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "tra_lr_factor": 1.0,
        "tra_warmup_iters": 0,
        "labeled_bs": 8,
        "unlabeled_bs": 8,
        "max_iterations": 30_000,
        "cl_weight": 0.0,
    }

    @classmethod
    def quick(cls) -> MCSCConfig:
        cfg = cls(
            profile="quick",
            image_size=64,
            labelled_cases=3,
            labeled_bs=4,
            unlabeled_bs=4,
            max_iterations=150,
            lr=2e-3,
            tra_lr_factor=0.5,
            tra_warmup_iters=20,
            proj_lr=1e-3,
            swin_drop_path=0.0,
            cps_rampup=150.0,
            cps_iters_per_step=1,
            cl_weight=0.01,
            cl_start_iteration=50,
            cl_max_samples=1024,
            cl_block=8,
            val_every=50,
            val_after=0,
            swin_pretrained=False,
            swin_embed_dim=24,
            swin_num_heads=(1, 2, 4, 8),
        )
        return dataclasses.replace(cfg, **cls._method_overrides("quick"))

    @classmethod
    def paper(cls) -> MCSCConfig:
        return dataclasses.replace(cls(profile="paper"), **cls._method_overrides("paper"))

    @classmethod
    def _method_overrides(cls, profile: str) -> dict:
        """The fields a registered method changes (subclasses set ``method``'s default)."""
        method = next(f.default for f in dataclasses.fields(cls) if f.name == "method")
        out: dict = {}
        if method != "mcsc":
            out["cl_weight"] = 0.0
        if method == "cts" and profile == "paper":
            out.update(cls.CTS_PAPER)
        return out

    def _unused_fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.cl_weight == 0:
            for k in (
                "cl_scales",
                "cl_start_iteration",
                "temperature",
                "proj_hidden",
                "proj_dim",
                "cl_sampling",
                "cl_max_samples",
                "cl_block",
                "balanced",
                "discard_background",
                "cross_labels",
                "legacy_label_order",
                "proj_lr",
                "legacy_double_contrast",
            ):
                out[k] = "cl_weight is 0 (no contrast)"
        if self.method in ("unet_ls", "unet_fs", "cps"):
            for k in (
                "tra_lr_factor",
                "tra_warmup_iters",
                "swin_pretrained",
                "swin_drop_path",
                "swin_embed_dim",
                "swin_num_heads",
            ):
                out[k] = f"method {self.method!r} trains no Swin-UNet"
        if self.method in ("unet_ls", "unet_fs"):
            for k in ("cps_weight", "cps_rampup", "cps_iters_per_step"):
                out[k] = f"method {self.method!r} is supervised only"
        if self.optimizer != "sgd":
            out["momentum"] = f"only optimizer='sgd' uses it (optimizer is {self.optimizer!r})"
        return out


@register("cts")
@dataclass
class CTSConfig(MCSCConfig):
    """CTS (Luo et al., MIDL 2022): MCSC without the contrast; ``paper``: the CTS script's optimiser (``CTS_PAPER``)."""

    method: str = "cts"


@register("cps")
@dataclass
class CPSConfig(MCSCConfig):
    """CPS baseline: two SSL4MIS UNets teaching each other (cross pseudo supervision), no contrast."""

    method: str = "cps"


@register("unet_ls")
@dataclass
class UNetLSConfig(MCSCConfig):
    """UNet-LS: the SSL4MIS UNet trained on the labelled slices only (batch ``labeled_bs + unlabeled_bs``)."""

    method: str = "unet_ls"


@register("unet_fs")
@dataclass
class UNetFSConfig(MCSCConfig):
    """UNet-FS: the SSL4MIS UNet trained on every training slice with its label (the upper bound)."""

    method: str = "unet_fs"


#: MCSC ablations as overrides of ``get_config("mcsc", profile)``: Tab. A1 rows (cumulative) and Tab. A2 (scales).
ABLATIONS: dict[str, dict] = {
    "A1:CTS": {"cl_weight": 0.0},
    "A1:SCL": {"cl_scales": (1,), "balanced": False, "discard_background": False, "cross_labels": False},
    "A1:+DB": {"cl_scales": (1,), "balanced": False, "discard_background": True, "cross_labels": False},
    "A1:+CroLab": {"cl_scales": (1,), "balanced": False, "discard_background": True, "cross_labels": True},
    "A1:+Balanced": {"cl_scales": (1,), "balanced": True, "discard_background": True, "cross_labels": True},
    "A1:+MulSca": {"cl_scales": (1, 8)},
    "A2:256": {"cl_scales": (1,)},
    "A2:56": {"cl_scales": (4,)},
    "A2:28": {"cl_scales": (8,)},
    "A2:256+28": {"cl_scales": (1, 8)},
    "A2:256+56": {"cl_scales": (1, 4)},
    "A2:256+56+28": {"cl_scales": (1, 4, 8)},
}


@register("pdcr")
@dataclass
class PDCRConfig(TrainConfig):
    """PDCR + UAFR (Liu et al., TMI 2022) plugged into a segmentation network (Sec. V-A, Table IV).

    Model: ``network`` ("deeplabv3plus" on a torchvision ResNet, "fcn" torchvision FCN-ResNet,
    "unet" mslib's UNet) with UAFR blocks after ``uafr_layers`` and H-PDCR (or RF-PDCR) on the
    features of ``pdcr_encoder_layers`` / ``pdcr_decoder_layers`` (layer names of the network;
    ``None``: the recipe's defaults, the official 2D choice: encoder stages 2-3, decoder low-level
    and last conv). Loss: CE (+ ``dice_weight`` x Dice) + sum of ``weight x PDCR`` per place.

    ``paper``: input 512 x 384 (W x H, Table IV; Sec. V-A trains at 512 x 512: set
    ``image_size=512``), Adam lr 1e-3, weight decay 1e-5, cosine to 1e-5 per step after a
    2-epoch warm-up (official ``schd_utils``), 300 epochs, batch 4 (the README's per-GPU
    batch; the paper's 64 is 16 GPUs x 4), affine augmentation (scale 0.8-1.2, rotation +-90,
    shear +-20, translation 0.1) and flips on both axes (Sec. V-A), N = 64 and 32 at the
    encoder (official 2D; the paper lists 128, 64, 32, 8, ... for its Xception layers),
    patch series 5, 7, 9, tau = 1, cross-layer projections to 32 channels, patch position
    encoding on (Table V(c), the paper's method; the official code has none), UAFR with M = 2
    and 16 hidden channels. PDCR weights: the paper's 0.01 for every place (Sec. V-A: "we add
    it as a regularization to cross-entropy loss with a weight of 0.01"); the official 2D
    ``demo.yaml`` uses 0.1 / 0.01 / 0.01 (encoder / decoder / cross-layer):
    ``dataclasses.replace(cfg, **PDCRConfig.OFFICIAL_WEIGHTS)``. Datasets: ISIC 2016 train,
    PH2 or ISIC 2016 test (Table I), also ISIC 2017, Montgomery (MC), DigestPath (preparers in
    ``data_scripts``).

    ``quick``: synthetic skin lesions at 64 px, a width-8 UNet of depth 3, N = 16 and 8, Adam
    at 3e-3, 8 epochs of 210 images (208 steps; what ``python -m mslib train --model pdcr``
    runs). Chapter 14 trains shorter runs (40 steps at 32 px per seed) and reports that the
    differences between the settings are within seed noise at that budget. The recipe
    (:mod:`mslib.recipes.pdcr`) builds the model, the total loss as a step function and the
    transforms from this config; :data:`mslib.recipes.pdcr.DATASETS` holds the per-dataset settings.
    """

    # network
    network: str = "deeplabv3plus"  # "deeplabv3plus" | "fcn" | "unet"
    backbone: str = "resnet50"  # ResNet of DeepLabV3+ / FCN
    output_stride: int = 16
    pretrained: object = "auto"  # ImageNet backbone: True | False | "auto" | path
    base_channels: int = 64  # UNet width
    depth: int = 4  # UNet poolings
    in_channels: int = 3
    num_classes: int = 2  # CE over background + lesion (paper: cross-entropy)
    # UAFR (Sec. IV)
    uafr: bool = True
    uafr_layers: tuple | None = None  # None: the recipe's default (all encoder and decoder stages, not ASPP)
    uafr_states: int = 2  # M (Table IX(b))
    uafr_hidden: int = 16
    # PDCR (Sec. III)
    pdcr: str = "h"  # "h" (H-PDCR) | "rf" (RF-PDCR, encoder only) | "none"
    pdcr_encoder_layers: tuple | None = None
    pdcr_decoder_layers: tuple | None = None
    cross_layer: bool = True  # H-PDCR across the two encoder layers (Eq. 12, Table VII)
    num_vectors: tuple = (64, 32)  # N per encoder layer (official 2D)
    decoder_num_vectors: tuple = (32, 8)  # N per decoder layer (official 2D)
    patch_sizes: tuple = (5, 7, 9)  # P = 3 (Sec. V-A)
    tau: float = 1.0  # official 2D; 3D uses 0.5
    proj_channels: int = 32  # cross-layer 1x1 projections (Sec. III-C-2)
    affinity: str = "ratio"  # Eq. 3 | "constant" | "rigid" | "center" | "dice" (Fig. 5, Table V(d))
    phi_norm: str = "area"  # Eq. 4 | "l1" | "l2" (Table V(a))
    ratio_first: bool = False  # Table V(b): loss per patch first (default)
    position_encoding: bool = True  # Table V(c)
    pdcr_reduction: str = "mean"  # "sum": Eq. 9/12 literally
    legacy_orientation: bool = False  # official 2D: similar pairs pushed apart, global max, sum
    legacy_transposed_ratios: bool = False  # official 2D: ratios read at (c, r)
    encoder_weight: float = 0.01  # paper Sec. V-A; official 2D 0.1
    decoder_weight: float = 0.01
    cross_weight: float = 0.01
    dice_weight: float = 0.0  # paper: CE only
    # data and augmentation (Sec. V-A)
    dataset: str = "isic2016"
    test_dataset: str | None = "ph2"
    synthetic_n: int = 300
    hflip: float = 0.5
    vflip: float = 0.5
    rotation: float = 90.0
    scale: tuple = (0.8, 1.2)
    shear: float = 20.0
    translate: float = 0.1

    OFFICIAL_WEIGHTS = {"encoder_weight": 0.1, "decoder_weight": 0.01, "cross_weight": 0.01}

    @classmethod
    def quick(cls) -> PDCRConfig:
        return cls(
            profile="quick",
            network="unet",
            base_channels=8,
            depth=3,
            pretrained=False,
            image_size=64,
            epochs=8,
            batch_size=8,
            optimizer="adam",
            lr=3e-3,
            weight_decay=1e-5,
            schedule="cosine",
            warmup_epochs=0.3,
            min_lr_ratio=0.01,
            num_vectors=(16, 8),
            decoder_num_vectors=(16, 8),
            dataset="synthetic-skin",
            test_dataset=None,
            synthetic_n=300,
            rotation=30.0,
            shear=0.0,
            scale=(0.9, 1.1),
            translate=0.05,
        )

    @classmethod
    def paper(cls) -> PDCRConfig:
        return cls(
            profile="paper",
            image_size=(384, 512),
            epochs=300,
            batch_size=4,
            optimizer="adam",
            lr=1e-3,
            weight_decay=1e-5,
            schedule="cosine",
            warmup_epochs=2.0,
            min_lr_ratio=1e-2,
        )
