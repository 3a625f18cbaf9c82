"""Per-image self-supervised optimisation of MS-Former (MS-Former Sec. 2.2 and 3.1), on the one engine.

:func:`optimise_image` runs :func:`mslib.train.fit` on a single image with a step function;
the MS-Former recipe (:func:`mslib.recipes.msformer.segment_image`) builds the fresh model
for each image and calls it. For every image a *fresh* MS-Former is trained on that image
alone: SGD (lr 0.1, momentum 0.9), at most 50 iterations, each minimising the joint loss
(MS-Former Eq. 10) on the current argmax pseudo-labels; the loop stops early once the argmax
map holds at most ``min_clusters`` distinct clusters (official code: 3). The returned cluster
map is the one the stopping rule looked at (no SGD step follows it), so an early-stopped map
never has more than ``min_clusters`` clusters. The model stays in training mode throughout
(BatchNorm uses the statistics of the image itself, as during optimisation).

Each image gets its own seed (``seed + index``), so a result does not depend on which other
images are in the list or on their order. A progress bar (``tqdm.auto``) runs over images.

For the book: ``keep_maps=True`` keeps the cluster map of every iteration (a widget over
iterations), ``keep_correlations=True`` the intra-scale correlation matrix rho of every
iteration (MS-Former Fig. 5), and ``callback(info)`` is called after every forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mslib.clustering import evaluate_clusters
from mslib.configs import MSFormerConfig, TrainConfig
from mslib.losses.scale_consistency import correlation_matrix, joint_loss
from mslib.train.engine import _progress, fit
from mslib.utils import image_to_tensor

__all__ = ["SelfSupResult", "prepare_image", "optimise_image", "per_image", "evaluate_results"]


@dataclass
class SelfSupResult:
    """Outcome of :func:`segment_image` for one image.

    ``labels``: (H, W) int64 cluster ids at the input image's size; ``labels_work``: the same
    at the working resolution; ``iterations``: SGD steps taken; ``stopped_early``: the
    cluster-count rule fired; ``history``: one dict per forward pass (``iteration``, ``ce``,
    ``inter``, ``intra``, ``total``, ``n_clusters``); ``maps`` / ``correlations``: per-iteration
    cluster maps (int16) / correlation matrices, when asked for; ``seconds``: wall time.
    """

    labels: torch.Tensor
    labels_work: torch.Tensor
    iterations: int
    stopped_early: bool
    history: list = field(default_factory=list)
    maps: list | None = None
    correlations: list | None = None
    seconds: float = 0.0

    @property
    def n_clusters(self) -> int:
        return int(self.labels_work.unique().numel())


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], ``(..., 3, H, W)`` -> CIE Lab (D65 white), ``L`` in [0, 100], ``a``/``b`` about [-110, 110]."""
    c = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = torch.tensor(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=x.dtype, device=x.device
    )
    white = torch.tensor([0.95047, 1.0, 1.08883], dtype=x.dtype, device=x.device)
    xyz = torch.einsum("ij,...jhw->...ihw", m, c) / white[:, None, None]
    d = 6 / 29
    f = torch.where(xyz > d**3, xyz.clamp_min(d**3) ** (1 / 3), xyz / (3 * d * d) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -3)


def prepare_image(image, size: int | None, standardize: bool = True, color_space: str = "rgb") -> torch.Tensor:
    """An image as a ``(1, C, size, size)`` float tensor.

    Accepts an ``(H, W)`` / ``(H, W, C)`` array (uint8 in 0-255 or float in [0, 1]) or a
    ``(C, H, W)`` tensor in [0, 1]. Resized with bilinear interpolation (antialiased) when
    ``size`` is given; ``color_space="lab"`` converts an RGB image to CIE Lab scaled to about
    [0, 1] (``L / 100``, ``(a + 128) / 255``, ``(b + 128) / 255``); ``standardize`` then gives each
    channel zero mean and unit variance over the image (the official code only divides by 255).
    """
    if color_space not in ("rgb", "lab"):
        raise ValueError(f"color_space must be 'rgb' or 'lab', got {color_space!r}")
    x = image_to_tensor(image)
    x = x[None]
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if color_space == "lab":
        if x.shape[1] != 3:
            raise ValueError(f"color_space='lab' needs a 3-channel RGB image, got {x.shape[1]} channel(s)")
        lab = rgb_to_lab(x.clamp(0, 1))
        x = torch.cat([lab[:, :1] / 100, (lab[:, 1:] + 128) / 255], 1)
    if standardize:
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-6)
    return x


def _selfsup_train_config(cfg: MSFormerConfig) -> TrainConfig:
    """The engine settings of the per-image optimisation: SGD, constant rate, ``max_iters`` steps, no seeding."""
    return TrainConfig(
        profile=cfg.profile,
        epochs=1,
        steps_per_epoch=cfg.max_iters,
        batch_size=1,
        image_size=cfg.image_size,
        optimizer="sgd",
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=0.0,
        schedule="constant",
        amp=False,
        seed=None,
    )


def _check_cfg(cfg: MSFormerConfig) -> None:
    if cfg.max_iters < 0:
        raise ValueError(f"max_iters must be >= 0, got {cfg.max_iters}")
    if not 1 <= cfg.min_clusters < cfg.n_clusters:
        raise ValueError(f"min_clusters must be in [1, n_clusters={cfg.n_clusters}), got {cfg.min_clusters}")


def optimise_image(
    x: torch.Tensor,
    model: nn.Module,
    cfg: MSFormerConfig,
    *,
    keep_maps: bool = False,
    keep_correlations: bool = False,
    callback: Callable[[dict], None] | None = None,
    out_hw: tuple[int, int] | None = None,
) -> SelfSupResult:
    """Optimise a fresh ``model`` on the one image ``x`` (1, C, H, W) with the engine (MS-Former Sec. 3.1).

    Each step is one forward pass, the joint loss (Eq. 10) on the current argmax pseudo-labels
    and one SGD step; a step whose argmax map holds at most ``cfg.min_clusters`` clusters stops
    the run *before* its update, and after ``cfg.max_iters`` updates one last forward pass gives
    the map. The model stays in training mode (BatchNorm uses the image's own statistics).
    ``out_hw`` resizes the returned labels (nearest) to the input image's size.
    """
    _check_cfg(cfg)
    t0 = time.perf_counter()
    lam = tuple(cfg.lambdas)
    with_tokens = bool(lam[2]) or keep_correlations
    history, maps, corrs = [], ([] if keep_maps else None), ([] if keep_correlations else None)
    state = {"labels": None, "stopped": False, "updates": 0}

    def observe(out, it: int) -> bool:
        labels = out.logits.detach()[0].argmax(0)
        n = int(labels.unique().numel())
        state["labels"] = labels
        history.append({"iteration": it, **state.pop("parts"), "n_clusters": n})
        rho = None
        if (keep_correlations or callback is not None) and out.tokens is not None:
            rho = correlation_matrix(*out.tokens[0])[0].detach().cpu()
        if keep_maps:
            maps.append(labels.to(torch.int16).cpu())
        if keep_correlations:
            corrs.append(rho)
        if callback is not None:
            callback({"iteration": it, "labels": labels, "parts": history[-1], "n_clusters": n, "correlation": rho})
        return n <= cfg.min_clusters

    def forward(image):
        out = model(image, with_tokens=with_tokens)
        loss, state["parts"] = joint_loss(out, lam, cfg.inter_mode, cfg.inter_blocks, cfg.intra_reduction)
        return out, loss

    def step_fn(ctx, batch):
        out, loss = forward(batch[0])
        if observe(out, ctx.step):
            state["stopped"] = True
            ctx.stop()
            return None
        state["updates"] += 1
        return loss

    model.train()
    if cfg.max_iters > 0:
        fit(
            model,
            [(x,)],
            config=_selfsup_train_config(cfg),
            step_fn=step_fn,
            metrics={},
            progress=False,
            distributed=False,
        )
    if not state["stopped"]:
        with torch.no_grad():
            out, _ = forward(x)
        state["stopped"] = observe(out, state["updates"])
    labels = state["labels"]
    labels_out = labels
    if out_hw is not None and tuple(labels.shape) != tuple(out_hw):
        labels_out = F.interpolate(labels[None, None].float(), size=out_hw, mode="nearest")[0, 0].long()
    return SelfSupResult(
        labels_out.cpu(),
        labels.cpu(),
        state["updates"],
        state["stopped"],
        history,
        maps,
        corrs,
        time.perf_counter() - t0,
    )


def per_image(
    fn: Callable[[int, object], SelfSupResult],
    images: Sequence,
    *,
    progress: bool = True,
    desc: str = "MS-Former per image",
) -> list[SelfSupResult]:
    """``[fn(i, images[i]) for i ...]`` with a progress bar (off with ``progress=False`` or ``TQDM_DISABLE=1``)."""
    results = []
    bar = _progress(range(len(images)), progress, desc=desc)
    for i in bar:
        r = fn(i, images[i])
        results.append(r)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(iters=r.iterations, clusters=r.n_clusters)
    return results


def input_hw(image) -> tuple[int, int] | None:
    """The (H, W) of an image given as a (C, H, W)/(H, W) tensor or an (H, W[, C]) array."""
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor):
        return shape[-2:] if len(shape) >= 2 else None
    return shape[:2]


def evaluate_results(
    results: Sequence[SelfSupResult | torch.Tensor], masks: Sequence, legacy_gt_crop_eval: bool = False
) -> dict[str, torch.Tensor]:
    """The paper's protocol (best-overlap cluster, any id) on each result: per-image DSC, HM, XOR.

    ``masks`` are the ground truths at the size of ``result.labels``. Returns the dict of
    :func:`mslib.clustering.evaluate_clusters` with one entry per image (fractions).
    """
    if len(results) != len(masks):
        raise ValueError(f"evaluate_results: {len(results)} results but {len(masks)} masks")
    rows = [
        evaluate_clusters(
            r.labels if isinstance(r, SelfSupResult) else r,
            torch.as_tensor(np.asarray(m)),
            legacy_gt_crop_eval=legacy_gt_crop_eval,
        )
        for r, m in zip(results, masks)
    ]
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
