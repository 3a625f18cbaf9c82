"""Configurations: one dataclass per method, each with a ``quick`` and a ``paper`` profile.

``quick`` runs on 2 CPU cores in about a minute on synthetic data; ``paper`` is the
paper's architecture, resolution, optimiser, schedule, epochs and loss weights (each value
cites the section it comes from). Both go through the same code: a profile is just data.

>>> cfg = get_config("unet", "quick")
>>> cfg = get_config("unet", "paper", epochs=3)      # overrides are checked by name
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

PROFILES = ("quick", "paper")
_REGISTRY: dict[str, type] = {}

__all__ = ["PROFILES", "TrainConfig", "register", "get_config", "available_methods"]


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
    return dataclasses.replace(cfg, **overrides)


@dataclass
class TrainConfig:
    """Options of :func:`mslib.train.engine.fit` shared by every supervised method."""

    profile: str = "quick"
    epochs: int = 5
    batch_size: int = 8
    image_size: int = 128
    optimizer: str = "adamw"          # "sgd" | "adam" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"          # "constant" | "linear" | "cosine" | "poly"
    warmup_epochs: float = 0.0
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    amp: bool = True                  # autocast on the model's device type: fp16 + GradScaler on CUDA
    amp_dtype: str | None = None      # None: fp16 on CUDA, off on CPU/MPS; "bfloat16"/"float16" force autocast (also on CPU)
    num_workers: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)


# ---- method configs are added below, one dataclass per method ---------------------


@register("m2snet")
@dataclass
class M2SNetConfig(TrainConfig):
    """MSNet / M2SNet (Zhao et al.): model, loss (Eq. 4) and training recipe (Sec. IV-C).

    Build with :func:`mslib.models.m2snet.build_m2snet`; ``mslib.models.m2snet.training_kwargs(cfg)``
    gives ``fit`` its loss, step function, the two learning-rate groups and multi-scale resizing.

    ``paper``: Res2Net-50 v1b with ImageNet weights, 352 x 352 input, multi-scale training (a random
    size per batch from {224, 256, 288, 320, 352}), horizontal flip and rotation, SGD (momentum
    0.9, weight decay 5e-4), learning rate 0.005 for the backbone and 0.05 for the rest
    (really two groups; the official grouping silently puts everything at 0.05, which
    ``legacy_lr_groups=True`` reproduces), warm-up then
    linear decay, batch 16, 50 epochs (polyps; 200 COVID-19 CT, 100 breast ultrasound and OCT).
    The paper gives no warm-up length; we warm up for half of training, which is the official
    code's triangular schedule (peak in the middle epoch) applied per step.

    ``lossnet_weight`` (lambda of L_f in Eq. 4): 1 in ``paper``, the paper's Eq. 4 (paper semantics,
    DESIGN.md); the official code uses 0.1 (set ``lossnet_weight=0.1`` to compare). Offline, with
    random VGG weights (``lossnet_pretrained="auto"``), L_f is about 0.1 for a random prediction,
    an order of magnitude below the structure loss (about 1.4), almost all of it from relu1_2.

    ``quick``: synthetic polyps at 96 px, a narrow shallow Res2Net (``backbone_width=0.25``, one
    block per stage), ``channels=32``, no ImageNet weights, AdamW at 2e-3 for both groups, 6 epochs
    (about 150 steps, about a minute on one CPU core), and LossNet *off* (``lossnet_weight=0``):
    its VGG-16 costs 4-5x the narrow model per step at 96 px. To include it in a quick run use
    ``lossnet_weight=1, lossnet_resize=48`` (about 1.2x the model's cost).
    """

    # model (mslib.models.m2snet.M2SNet)
    unit: str = "msu"                  # "msu" M2SNet | "su" MSNet | "au" | "msu_aspp" | "msu_denseaspp"
    orders: tuple | None = None        # n of MS_n^i summed in CE^i (Eq. 3); None: all
    wiring: str = "official"           # "official" (27,692,329 params) | "eq3"
    channels: int = 64                 # reduced width (Sec. III)
    pretrained: object = "auto"        # ImageNet Res2Net: True | False | "auto" | path
    backbone_width: float = 1.0
    backbone_layers: tuple = (3, 4, 6, 3)
    in_channels: int = 3
    num_classes: int = 1
    unit_kwargs: dict = field(default_factory=dict)   # e.g. {"mode": "depthwise"} for the MSU
    # loss (Eq. 4)
    lossnet_weight: float = 1.0        # paper Eq. 4: 1; official code: 0.1
    lossnet_pretrained: object = "auto"
    lossnet_resize: int | None = None  # official: 224
    legacy_bce: bool = False           # official unweighted BCE (reduce='none' bug)
    # optimisation: two parameter groups (Sec. IV-C)
    backbone_lr: float = 0.005
    head_lr: float = 0.05
    legacy_lr_groups: bool = False     # official: the backbone group is empty, everything trains at head_lr
    # data
    multiscale_sizes: tuple | None = (224, 256, 288, 320, 352)
    hflip: float = 0.5
    rotation: float = 10.0             # degrees, uniform in [-rotation, rotation] (official loader)
    normalize: str = "imagenet"        # ImageNet mean/std (the backbone's)

    @classmethod
    def paper(cls) -> "M2SNetConfig":
        return cls(profile="paper", epochs=50, batch_size=16, image_size=352, optimizer="sgd", lr=0.05,
                   momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="linear", warmup_epochs=25.0,
                   amp=True, pretrained="auto", lossnet_pretrained="auto", lossnet_weight=1.0,
                   backbone_lr=0.005, head_lr=0.05, multiscale_sizes=(224, 256, 288, 320, 352))

    @classmethod
    def quick(cls) -> "M2SNetConfig":
        return cls(profile="quick", epochs=6, batch_size=8, image_size=96, optimizer="adamw", lr=2e-3,
                   weight_decay=1e-4, schedule="cosine", warmup_epochs=0.5, channels=32, pretrained=False,
                   backbone_width=0.25, backbone_layers=(1, 1, 1, 1), lossnet_pretrained="auto",
                   lossnet_weight=0.0, backbone_lr=2e-3, head_lr=2e-3, multiscale_sizes=None, rotation=10.0)


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

    Four defaults are not the published run, all within the paper's method (the paper fixes
    neither K nor the Mix-FFN width) and all chosen on synthetic skin images (tuning set
    ``make_batch("skin", 20, 128, seed=123)``, checked on ``seed=2024``; see
    ``benchmarks/bench_selfsup.py`` and book chapter 9), because with the published setting the
    chosen cluster merges the lesion with hair, vignette or skin and the method is *below*
    k-means under the honest protocol (DSC 60.5 vs 64.9 at 128 px):

    * ``out_norm=True``: the score map is ``S = softmax(BN(z))``, the ``BN(z)`` that Eq. 7 already
      puts on the output (as Kim and Kanezaki's self-training clustering does). Without it one
      cluster's logit grows for every pixel and the argmax collapses onto a few merged clusters.
    * ``lambdas=(1, 2, 0.3)``: lambda3 (intra-scale) at 0.3 instead of 1.2, inside the (0, 2)
      range of the paper's grid search. The intra-scale term pulls neighbouring clusters
      together (its stated purpose, Sec. 2.4) and at 1.2 it merges the lesion with the skin.
    * ``n_clusters=10`` (official: 100) and ``mlp_ratio=2`` (official: 4): at 128 px they score as
      well as K = 100 with ratio 4 on synthetic images (DSC 76.1 and 77.9 vs 77.0 and 77.0 on the
      two sets), better on the ISIC crops (68.4 vs 63.0), end with fewer clusters (6 vs 15-17,
      closer to k-means' 3) and halve the time per SGD step at 257 px (0.27 vs 0.48 s on 2 cores)
      and its memory. At 64 px they are 6 points below K = 100 (72.5 vs 78.7, k-means 70.0), so
      the quick profile works at 128 px (chapter 9 takes 60-80 s on 2 cores instead of 35 s).

    The published setting is ``out_norm=False, lambdas=(1, 2, 1.2), n_clusters=100,
    mlp_ratio=4`` (``MSFormerConfig.PUBLISHED``). It is the better one on the team's 20 real
    ISIC 2016 *centre crops* (DSC 74.3 vs 68.4 for these defaults, k-means 70.3 at 128 px),
    where the lesion fills about three quarters of the image and merging pays; on synthetic
    images, whose lesions cover 4-46 % of the image as in full dermoscopy images (PH2: about a
    quarter), it loses to k-means. Chapter 9 shows both; no setting tried wins clearly on both.
    """

    profile: str = "quick"
    image_size: int = 128             # working resolution (square); maps are resized back for evaluation
    n_clusters: int = 10              # K output channels = maximum number of clusters (official: 100)
    dim: int = 32                     # token width d of both branches
    depth: int = 2                    # blocks per branch (Sec. 3.1)
    heads: int = 1                    # official code forces 1 head
    mlp_ratio: float = 2.0            # Mix-FFN hidden width / dim (official: 4)
    patch_embed: str = "conv3x3"      # "conv3x3" (overlapping, official) | "patch" (non-overlapping)
    intra_dim: int = 64
    intra_grid: int = 8               # 8 x 8 = 64 intra-scale tokens, as the official code
    intra_cell: int = 4
    shift: int = 2                    # Appendix A: shift 2; official: 1
    shift_mode: str = "hv"            # "hv" (paper) | "diagonal" (official)
    lambdas: tuple = (1.0, 2.0, 0.3)  # (CE, inter, intra), Eq. 10; published (1, 2, 1.2), see the docstring
    inter_mode: str = "matrix"        # "matrix" (Eq. 5) | "rowwise" (official)
    inter_blocks: str = "all"         # "all" | "last" (official)
    intra_reduction: str = "mean"     # "mean" (official) | "sum" (Eq. 9 literally)
    lr: float = 0.1
    momentum: float = 0.9
    max_iters: int = 50
    min_clusters: int = 3             # early stop when the argmax map has at most this many clusters
    standardize: bool = True          # per-image, per-channel zero mean / unit variance input
    out_norm: bool = True             # score map S = softmax(BN(z)) (the BN(z) of Eq. 7); published: softmax(z)
    kmeans_k: int = 3                 # baseline (Table 1): 3 for skin, 2 for lung
    seed: int = 0

    #: the published loss setting (MS-Former Appendix A, official code): use with ``dataclasses.replace(cfg, **PUBLISHED)``
    PUBLISHED = {"out_norm": False, "lambdas": (1.0, 2.0, 1.2), "n_clusters": 100, "mlp_ratio": 4.0}

    @classmethod
    def quick(cls) -> "MSFormerConfig":
        return cls(profile="quick", image_size=128)

    @classmethod
    def paper(cls) -> "MSFormerConfig":
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
    loss: str = "dice_bce"             # "dice_bce" (binary) | "dice_ce" (multi-class) | "bce" | "ce"
    # data (used by the CLI and the chapter)
    synthetic_n: int = 300             # synthetic datasets only: number of generated images (70/15/15 split)
    hflip: float = 0.5
    vflip: float = 0.0
    rotation: float = 0.0              # degrees

    @classmethod
    def quick(cls) -> "UNetConfig":
        return cls(profile="quick", epochs=15, batch_size=8, image_size=64, optimizer="adamw", lr=3e-3,
                   weight_decay=1e-4, schedule="cosine", warmup_epochs=0.3, base_channels=8, depth=4,
                   synthetic_n=300, hflip=0.5, vflip=0.5, rotation=0.0)

    @classmethod
    def paper(cls) -> "UNetConfig":
        return cls(profile="paper", epochs=50, batch_size=16, image_size=352, optimizer="adam", lr=1e-4,
                   weight_decay=0.0, schedule="cosine", warmup_epochs=1.0, amp=True, base_channels=64, depth=4,
                   synthetic_n=1000, hflip=0.5, vflip=0.0, rotation=10.0)
