"""Per-image self-supervised optimisation of MS-Former (MS-Former Sec. 2.2 and 3.1).

For every image a *fresh* :class:`~mslib.models.msformer.MSFormer` is trained on that image
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

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mslib.clustering import evaluate_clusters
from mslib.configs import MSFormerConfig
from mslib.losses.scale_consistency import correlation_matrix, joint_loss
from mslib.models.msformer import MSFormer

__all__ = ["SelfSupResult", "prepare_image", "build_model", "segment_image", "segment_images", "evaluate_results"]


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


def prepare_image(image, size: int | None, standardize: bool = True) -> torch.Tensor:
    """An image as a ``(1, C, size, size)`` float tensor.

    Accepts an ``(H, W)`` / ``(H, W, C)`` array (uint8 in 0-255 or float in [0, 1]) or a
    ``(C, H, W)`` tensor in [0, 1]. Resized with bilinear interpolation (antialiased) when
    ``size`` is given; ``standardize`` gives each channel zero mean and unit variance over the
    image (the official code only divides by 255).
    """
    if isinstance(image, torch.Tensor):
        x = image.detach().float()
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3:
            raise ValueError(f"image tensor must be (C, H, W) or (H, W), got {tuple(image.shape)}")
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ValueError(f"image array must be (H, W) or (H, W, C), got shape {arr.shape}")
        x = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float()   # copy: arrays from PIL are read-only
        if arr.dtype == np.uint8:
            x = x / 255.0
    x = x[None]
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if standardize:
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-6)
    return x


def build_model(cfg: MSFormerConfig, in_channels: int = 3) -> MSFormer:
    """A fresh :class:`MSFormer` from a config (uses the global torch RNG for its initialisation)."""
    return MSFormer(in_channels, cfg.n_clusters, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.patch_embed,
                    intra_dim=cfg.intra_dim, intra_grid=cfg.intra_grid, intra_cell=cfg.intra_cell,
                    shift=cfg.shift, shift_mode=cfg.shift_mode, out_norm=cfg.out_norm)


def _check_cfg(cfg: MSFormerConfig) -> None:
    if cfg.max_iters < 0:
        raise ValueError(f"max_iters must be >= 0, got {cfg.max_iters}")
    if not 1 <= cfg.min_clusters < cfg.n_clusters:
        raise ValueError(f"min_clusters must be in [1, n_clusters={cfg.n_clusters}), got {cfg.min_clusters}")


def segment_image(image, cfg: MSFormerConfig | None = None, *, seed: int | None = None, keep_maps: bool = False,
                  keep_correlations: bool = False, callback: Callable[[dict], None] | None = None,
                  device: str | torch.device | None = None) -> SelfSupResult:
    """Optimise a fresh MS-Former on one image and return its cluster map (MS-Former Sec. 3.1).

    ``cfg`` defaults to ``MSFormerConfig.quick()``; ``seed`` (default ``cfg.seed``) fixes the
    initialisation, so the same image and seed give the same map. ``callback(info)`` receives
    ``{"iteration", "labels", "parts", "n_clusters", "correlation"}`` after each forward pass.
    """
    cfg = cfg or MSFormerConfig.quick()
    _check_cfg(cfg)
    seed = cfg.seed if seed is None else seed
    t0 = time.perf_counter()
    x = prepare_image(image, cfg.image_size, cfg.standardize)
    out_hw = _input_hw(image)
    if device is not None:
        x = x.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, x.shape[1]).to(x.device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    lam = tuple(cfg.lambdas)
    history, maps, corrs = [], ([] if keep_maps else None), ([] if keep_correlations else None)
    stopped, it = False, 0
    while True:
        last = it >= cfg.max_iters
        with torch.set_grad_enabled(not last):
            out = model(x, with_tokens=bool(lam[2]) or keep_correlations)
            loss, parts = joint_loss(out, lam, cfg.inter_mode, cfg.inter_blocks, cfg.intra_reduction)
        labels = out.logits.detach()[0].argmax(0)
        n = int(labels.unique().numel())
        history.append({"iteration": it, **parts, "n_clusters": n})
        rho = None
        if keep_correlations or callback is not None:
            if out.tokens is not None:
                rho = correlation_matrix(*out.tokens[0])[0].detach().cpu()
        if keep_maps:
            maps.append(labels.to(torch.int16).cpu())
        if keep_correlations:
            corrs.append(rho)
        if callback is not None:
            callback({"iteration": it, "labels": labels, "parts": parts, "n_clusters": n, "correlation": rho})
        if n <= cfg.min_clusters:
            stopped = True
            break
        if last:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
    labels_out = labels
    if out_hw is not None and tuple(labels.shape) != out_hw:
        labels_out = F.interpolate(labels[None, None].float(), size=out_hw, mode="nearest")[0, 0].long()
    return SelfSupResult(labels_out.cpu(), labels.cpu(), it, stopped, history, maps, corrs,
                         time.perf_counter() - t0)


def _input_hw(image) -> tuple[int, int] | None:
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor):
        return shape[-2:] if len(shape) >= 2 else None
    return shape[:2]


def segment_images(images: Sequence, cfg: MSFormerConfig | None = None, *, seed: int | None = None,
                   progress: bool = True, **kwargs) -> list[SelfSupResult]:
    """:func:`segment_image` on each image (image ``i`` seeded with ``seed + i``), with a progress bar.

    ``images`` is a sequence (list or stacked array/tensor) of images in any form
    :func:`prepare_image` accepts. Images are optimised one after the other: each has its own
    model and optimiser, exactly as the per-image semantics require.
    """
    cfg = cfg or MSFormerConfig.quick()
    seed = cfg.seed if seed is None else seed
    results = []
    bar = tqdm(range(len(images)), desc="MS-Former per image", disable=not progress)
    for i in bar:
        r = segment_image(images[i], cfg, seed=seed + i, **kwargs)
        results.append(r)
        bar.set_postfix(iters=r.iterations, clusters=r.n_clusters)
    return results


def evaluate_results(results: Sequence[SelfSupResult | torch.Tensor], masks: Sequence,
                     legacy_gt_crop_eval: bool = False) -> dict[str, torch.Tensor]:
    """The paper's protocol (best-overlap cluster, any id) on each result: per-image DSC, HM, XOR.

    ``masks`` are the ground truths at the size of ``result.labels``. Returns the dict of
    :func:`mslib.clustering.evaluate_clusters` with one entry per image (fractions).
    """
    if len(results) != len(masks):
        raise ValueError(f"evaluate_results: {len(results)} results but {len(masks)} masks")
    rows = [evaluate_clusters(r.labels if isinstance(r, SelfSupResult) else r, torch.as_tensor(np.asarray(m)),
                              legacy_gt_crop_eval=legacy_gt_crop_eval) for r, m in zip(results, masks)]
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


def replace(cfg: MSFormerConfig, **kw) -> MSFormerConfig:
    """``dataclasses.replace`` for configs (convenience for ablations)."""
    return dataclasses.replace(cfg, **kw)
