"""Joint image + mask augmentation on ``torchvision.transforms.v2``.

Every geometric step acts on the image and the mask together with the same random
parameters, because the mask is a :class:`torchvision.tv_tensors.Mask`: torchvision then
uses nearest-neighbour interpolation for it (so a resize or rotation never invents a class
index) and leaves it untouched by photometric steps (colour jitter, normalisation). Areas
that a rotation or affine map brings in from outside the image are filled with 0 (black
image, background mask).

``build_transforms(train, size, ...)`` returns a :class:`v2.Compose` called as
``transform(image, mask)``; :data:`AUGMENTATIONS` holds the settings the seed papers
report, e.g. ``build_transforms(True, 352, **AUGMENTATIONS["m2snet"])``.
:class:`RandomBatchResize` is M2SNet's multi-scale training: the whole batch is resized to
one size drawn at random per step.

Soft masks (``soft_masks=True``) reproduce the M2SNet official loader: the 0/1 mask is
resized *bilinearly* as a float map (values in [0, 1] along object borders), so the loss
sees soft targets. This is an official-code behaviour and off by default (paper semantics:
masks stay class indices).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image as PILImage
from torch.utils.data import default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["build_transforms", "AUGMENTATIONS", "RandomBatchResize", "RandomRot90Flip", "JointResize"]

#: Augmentations reported by the seed papers (keyword arguments of :func:`build_transforms`).
AUGMENTATIONS: dict[str, dict[str, Any]] = {
    # no augmentation (evaluation-like training, or self-supervised per-image methods such as MS-Former)
    "none": dict(hflip=0.0),
    # M2SNet Sec. IV-A: "random horizontally flipping and random rotate"; the paper gives no angle,
    # the official loader rotates by up to +-10 degrees (shared/notes/official-implementations.md).
    "m2snet": dict(hflip=0.5, rotation=10.0),
    # PDCR+UAFR Sec. V-A: scale 0.8-1.2, rotation -90..90 degrees, shear -20..20 degrees,
    # shift 0.1, random flips for both axes.
    "pdcr": dict(hflip=0.5, vflip=0.5, rotation=90.0, scale=(0.8, 1.2), translate=0.1, shear=20.0),
    # MCSC (SSL4MIS RandomGenerator as copied by MCSC): with p=0.5 a random multiple of 90 degrees
    # plus a flip along a random axis, with p=0.25 a rotation by up to +-20 degrees, else nothing.
    "mcsc": dict(hflip=0.0, rot90=0.5, rotation=20.0, rotation_p=0.25, exclusive=True),
}


def _pair(size: int | Sequence[int], what: str = "size") -> list[int]:
    if isinstance(size, bool) or not isinstance(size, (int, Sequence)) or isinstance(size, str):
        raise TypeError(f"{what} must be an int (square output) or a (height, width) pair, got {size!r}")
    out = [size, size] if isinstance(size, int) else list(size)
    if len(out) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in out):
        raise ValueError(f"{what} must be a positive int or a (height, width) pair of positive ints, got {size!r}")
    return out


class _CompatTransform(v2.Transform):
    """``v2.Transform`` whose hooks work across torchvision versions (0.19: ``_transform``/``_get_params``)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {}

    def _get_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # torchvision < 0.21
        return self.make_params(flat_inputs)

    def _transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # torchvision < 0.21
        return self.transform(inpt, params)


class JointResize(_CompatTransform):
    """Resize image (bilinear, antialiased) and mask (nearest) to ``size``.

    With ``soft_masks=True`` the mask is instead resized bilinearly as a float map (M2SNet
    official loader; values stay in [0, 1] for a 0/1 mask) and returned as a float ``Mask``.
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask, tv_tensors.Video, PILImage.Image)

    def __init__(self, size: int | Sequence[int], soft_masks: bool = False):
        super().__init__()
        self.size = _pair(size)
        self.soft_masks = bool(soft_masks)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if self.soft_masks and isinstance(inpt, tv_tensors.Mask):
            x = inpt.as_subclass(torch.Tensor).to(torch.float32)
            squeeze = x.ndim == 2
            x = x[None] if squeeze else x
            x = F.resize_image(x, self.size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
            return tv_tensors.Mask(x[0] if squeeze else x)
        return F.resize(inpt, self.size, antialias=True)


class RandomRot90Flip(_CompatTransform):
    """Rotate by ``k * 90`` degrees (k uniform in 0..3), then flip along a random axis.

    The ``random_rot_flip`` of SSL4MIS that MCSC trains with; exact (no interpolation). As
    there, the flip is always applied, so the result is one of the four reflections of the
    square's symmetry group (never the identity or a pure rotation).
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask, tv_tensors.Video)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(4, ()).item()), "axis": int(torch.randint(2, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
        x = torch.flip(x, dims=(-2 if params["axis"] == 0 else -1,))
        return tv_tensors.wrap(x, like=inpt)


class _AsTVTensors:
    """When called as ``(image, mask)`` with plain tensors, arrays or PIL images, wrap them as
    ``tv_tensors.Image`` / ``tv_tensors.Mask`` (v2 would otherwise treat only the first plain
    tensor as the image and leave the mask untransformed)."""

    def __call__(self, *inputs: Any) -> Any:
        if len(inputs) != 2:
            return inputs[0] if len(inputs) == 1 else inputs
        image, mask = inputs
        if not isinstance(image, (tv_tensors.TVTensor, PILImage.Image)):
            image = F.to_image(image)
        if not isinstance(mask, tv_tensors.TVTensor):
            mask = torch.as_tensor(np.array(mask)) if not isinstance(mask, torch.Tensor) else mask
            mask = tv_tensors.Mask(mask if mask.is_floating_point() else mask.to(torch.int64))
        return image, mask

    def __repr__(self) -> str:
        return "AsTVTensors()"


def build_transforms(
    train: bool,
    size: int | Sequence[int] | None,
    *,
    hflip: float = 0.5,
    vflip: float = 0.0,
    rotation: float = 0.0,
    scale: Sequence[float] | None = None,
    shear: float = 0.0,
    translate: float = 0.0,
    color_jitter: Sequence[float] | None = None,
    soft_masks: bool = False,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    rot90: float = 0.0,
    rotation_p: float = 1.0,
    exclusive: bool = False,
) -> v2.Compose:
    """Joint transform for ``(image, mask)`` pairs.

    Order: resize to ``size`` (int: square; ``(h, w)``; ``None``: keep) -> [train only:
    flips -> rot90/rotation/affine -> colour jitter] -> normalise. With ``train=False``
    only resize and normalise are applied.

    Args:
        train: add the random augmentations.
        size: output size. Images bilinear (antialiased); masks nearest, or bilinear float
            maps with ``soft_masks=True`` (M2SNet official loader, see the module docstring).
        hflip, vflip: probabilities of a horizontal / vertical flip.
        rotation: maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        scale: ``(min, max)`` zoom factor of a random affine map, e.g. ``(0.8, 1.2)``.
        shear: maximum shear in degrees (x-shear uniform in ``[-shear, shear]``).
        translate: maximum shift as a fraction of width / height.
        color_jitter: ``(brightness, contrast, saturation, hue)`` of ``v2.ColorJitter``
            (images only; masks are untouched).
        normalize: ``(mean, std)`` per channel, e.g. ImageNet's; images only.
        rot90: probability of :class:`RandomRot90Flip` (MCSC / SSL4MIS).
        rotation_p: probability of the rotation / affine step (1 = always).
        exclusive: apply at most one of the rot90 step (probability ``rot90``) and the
            rotation / affine step (probability ``rotation_p``), as SSL4MIS's generator does.

    Returns:
        a ``v2.Compose``; call it as ``image, mask = t(image, mask)`` with a
        ``tv_tensors.Image`` and a ``tv_tensors.Mask`` (plain tensors, arrays and PIL images
        given as a pair are wrapped first).
    """
    for name, p in (("hflip", hflip), ("vflip", vflip), ("rot90", rot90), ("rotation_p", rotation_p)):
        if not isinstance(p, Number) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} is a probability and must be in [0, 1], got {p!r}")
    for name, v in (("rotation", rotation), ("shear", shear)):
        if not isinstance(v, Number) or v < 0:
            raise ValueError(f"{name} is a maximum angle in degrees and must be >= 0, got {v!r}")
    if not isinstance(translate, Number) or not 0.0 <= translate <= 1.0:
        raise ValueError(f"translate is a fraction of the image size in [0, 1], got {translate!r}")
    if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
        raise ValueError(f"scale must be a (min, max) pair with 0 < min <= max, e.g. (0.8, 1.2), got {scale!r}")
    if color_jitter is not None and len(color_jitter) != 4:
        raise ValueError(f"color_jitter must be (brightness, contrast, saturation, hue), got {color_jitter!r}")
    if normalize is not None and (len(normalize) != 2 or len(normalize[0]) != len(normalize[1])):
        raise ValueError(f"normalize must be (mean, std) with one value per channel each, got {normalize!r}")
    if exclusive and rot90 + rotation_p > 1.0 + 1e-9:
        raise ValueError(f"with exclusive=True, rot90 + rotation_p must be <= 1, got {rot90} + {rotation_p}")

    steps: list[Any] = [_AsTVTensors(), v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
    if size is not None:
        steps.append(JointResize(size, soft_masks=soft_masks))
    elif soft_masks:
        steps.append(v2.ToDtype({tv_tensors.Mask: torch.float32, "others": None}))
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(hflip))
        if vflip > 0:
            steps.append(v2.RandomVerticalFlip(vflip))
        bilinear = v2.InterpolationMode.BILINEAR
        affine = None
        if scale is not None or shear > 0 or translate > 0:
            affine = v2.RandomAffine(
                degrees=rotation,
                translate=(translate, translate) if translate else None,
                scale=tuple(scale) if scale is not None else None,
                shear=shear if shear > 0 else None,
                interpolation=bilinear,
            )
        elif rotation > 0:
            affine = v2.RandomRotation(rotation, interpolation=bilinear)
        turn = RandomRot90Flip() if rot90 > 0 else None
        if exclusive and (turn is not None or affine is not None):
            options, probs = [], []
            for t, p in ((turn, rot90), (affine, rotation_p)):
                if t is not None and p > 0:
                    options.append(t)
                    probs.append(float(p))
            rest = 1.0 - sum(probs)
            if rest > 1e-9:
                options.append(v2.Identity())
                probs.append(rest)
            steps.append(v2.RandomChoice(options, p=probs))
        else:
            if turn is not None:
                steps.append(v2.RandomApply([turn], p=rot90))
            if affine is not None and rotation_p > 0:
                steps.append(affine if rotation_p >= 1 else v2.RandomApply([affine], p=rotation_p))
        if color_jitter is not None:
            steps.append(v2.ColorJitter(*color_jitter))
    if normalize is not None:
        steps.append(v2.Normalize(mean=list(normalize[0]), std=list(normalize[1])))
    return v2.Compose(steps)


class RandomBatchResize:
    """Resize a whole batch to one size drawn at random (M2SNet multi-scale training).

    M2SNet trains at 352 px but resizes every batch to a size drawn from
    ``{224, 256, 288, 320, 352}`` (official ``collate``). Call it on a batch::

        images, masks = RandomBatchResize()(images, masks)

    or use :meth:`collate` as a DataLoader ``collate_fn``. Images (B, C, H, W) float are
    resized bilinearly (antialiased); masks (B, H, W) or (B, 1, H, W) by nearest neighbour
    when integer (class indices stay class indices) or bilinearly when float (soft masks).
    The size is drawn with ``torch.randint`` (seeded by ``torch.manual_seed`` or the given
    ``generator``). Tensors stay on their device.
    """

    def __init__(
        self, sizes: Sequence[int | Sequence[int]] = (224, 256, 288, 320, 352), generator: torch.Generator | None = None
    ):
        if isinstance(sizes, (int, str)) or len(sizes) == 0:
            raise ValueError(f"sizes must be a non-empty list of sizes, e.g. (224, 256, 288, 320, 352), got {sizes!r}")
        self.sizes = [tuple(_pair(s, "sizes entry")) for s in sizes]
        self.generator = generator
        self.last_size: tuple[int, int] | None = None

    def draw(self) -> tuple[int, int]:
        """Draw the next size."""
        i = int(torch.randint(len(self.sizes), (), generator=self.generator).item())
        return self.sizes[i]

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None = None):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
        size = self.last_size = self.draw()
        x = images.as_subclass(torch.Tensor)
        out = nnf.interpolate(
            x.float() if not x.is_floating_point() else x,
            size=size,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        if masks is None:
            return out
        if not isinstance(masks, torch.Tensor) or masks.ndim not in (3, 4) or masks.shape[0] != images.shape[0]:
            shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise ValueError(
                f"masks must be (B, H, W) or (B, 1, H, W) with the images' batch size {images.shape[0]}, got {shape}"
            )
        m = masks.as_subclass(torch.Tensor)
        squeeze = m.ndim == 3
        m = m[:, None] if squeeze else m
        if m.is_floating_point():
            m = nnf.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
        else:
            m = nnf.interpolate(m.float(), size=size, mode="nearest").to(masks.dtype)
        return out, (m[:, 0] if squeeze else m)

    def collate(self, batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        """``collate_fn`` for a DataLoader over ``(image, mask)`` items of equal size."""
        images, masks = default_collate(batch)
        return self(images, masks)

    def __repr__(self) -> str:
        return f"RandomBatchResize(sizes={[s[0] if s[0] == s[1] else s for s in self.sizes]})"
