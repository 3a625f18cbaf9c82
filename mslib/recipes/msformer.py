"""The MS-Former recipe (MS-Former Sec. 2-3): a fresh model per image from an
:class:`mslib.configs.MSFormerConfig`, optimised on that image alone by
:func:`mslib.train.selfsup.optimise_image` (the one engine).

>>> cfg = get_config("msformer", "quick")
>>> result = segment_image(image, cfg)          # result.labels: (H, W) cluster ids
>>> results = segment_images(images, cfg)       # image i seeded with cfg.seed + i
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mslib.configs import MSFormerConfig
from mslib.models.msformer import MSFormer
from mslib.train.selfsup import SelfSupResult, evaluate_results, input_hw, optimise_image, per_image, prepare_image

__all__ = ["build_model", "segment_image", "segment_images", "prepare_image", "evaluate_results", "SelfSupResult"]


def build_model(cfg: MSFormerConfig, in_channels: int = 3) -> MSFormer:
    """A fresh :class:`~mslib.models.msformer.MSFormer` from a config (initialised from the global torch RNG)."""
    return MSFormer(
        in_channels,
        cfg.n_clusters,
        cfg.dim,
        cfg.depth,
        cfg.heads,
        cfg.mlp_ratio,
        cfg.patch_embed,
        intra_dim=cfg.intra_dim,
        intra_grid=cfg.intra_grid,
        intra_cell=cfg.intra_cell,
        shift=cfg.shift,
        shift_mode=cfg.shift_mode,
        out_norm=cfg.out_norm,
    )


def segment_image(
    image,
    cfg: MSFormerConfig | None = None,
    *,
    seed: int | None = None,
    keep_maps: bool = False,
    keep_correlations: bool = False,
    callback: Callable[[dict], None] | None = None,
    device: str | torch.device | None = None,
) -> SelfSupResult:
    """Optimise a fresh MS-Former on one image and return its cluster map (MS-Former Sec. 3.1).

    ``image``: an (H, W[, C]) array (uint8 or float in [0, 1]) or a (C, H, W) tensor in [0, 1];
    it is resized to ``cfg.image_size`` and, with ``cfg.standardize``, standardised per channel.
    ``cfg`` defaults to ``MSFormerConfig.quick()``; ``seed`` (default ``cfg.seed``) fixes the
    initialisation, so the same image and seed give the same map. ``callback(info)`` receives
    ``{"iteration", "labels", "parts", "n_clusters", "correlation"}`` after each forward pass.
    """
    cfg = cfg or MSFormerConfig.quick()
    seed = cfg.seed if seed is None else seed
    x = prepare_image(image, cfg.image_size, cfg.standardize, cfg.color_space)
    if not torch.isfinite(x).all():
        raise ValueError(
            "segment_image: the image holds NaN or infinite values; clean it (e.g. np.nan_to_num) before segmenting"
        )
    if device is not None:
        x = x.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, x.shape[1]).to(x.device)
    return optimise_image(
        x,
        model,
        cfg,
        keep_maps=keep_maps,
        keep_correlations=keep_correlations,
        callback=callback,
        out_hw=input_hw(image),
    )


def segment_images(
    images: Sequence, cfg: MSFormerConfig | None = None, *, seed: int | None = None, progress: bool = True, **kwargs
) -> list[SelfSupResult]:
    """:func:`segment_image` on each image (image ``i`` seeded with ``seed + i``), with a progress bar.

    Images are optimised one after the other, each with its own model and optimiser, exactly
    as the per-image semantics require; a result does not depend on the other images.
    ``progress=False`` or ``TQDM_DISABLE=1`` hide the bar.
    """
    cfg = cfg or MSFormerConfig.quick()
    seed = cfg.seed if seed is None else seed
    return per_image(lambda i, im: segment_image(im, cfg, seed=seed + i, **kwargs), images, progress=progress)
