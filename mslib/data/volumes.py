"""``VolumeDataset``: whole volumes of a prepared dataset cut from 3D scans, for per-volume
evaluation (ACDC, Synapse, COVID-19 CT).

Volumetric datasets are stored slice by slice in the prepared layout (so training uses the
plain :class:`~mslib.data.folder.SegmentationFolder`), and ``dataset.json`` records which
slices form which volume, in order::

    "volumes": {"patient011_frame01": ["patient011_frame01_slice_0", ...], ...}
    "spacing": {"patient011_frame01": [10.0, 1.56, 1.56], ...}      (mm, (z, y, x); optional)

MCSC (like SSL4MIS) reports Dice and HD95 per volume, averaged over volumes, so the test set
must be read volume by volume: item ``i`` is ``(image, label, name)`` with ``image`` float32
of shape (S, C, H, W) in [0, 1], ``label`` int64 of shape (S, H, W) and ``name`` the volume's
name. A ``transform`` is applied jointly to each slice (use a deterministic one, e.g. a resize).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from .folder import DatasetError, SegmentationFolder

__all__ = ["VolumeDataset"]


class VolumeDataset(Dataset):
    """The volumes whose slices make up ``split`` of a prepared dataset with ``"volumes"`` metadata.

    Args:
        root: the prepared dataset folder.
        split: a split whose slices are whole volumes (``"val"``, ``"test"``, or ``"train"``).
        transform: joint per-slice ``transform(image, mask)``.
        validate: passed to :class:`SegmentationFolder`.

    Raises :class:`~mslib.data.folder.DatasetError` when ``dataset.json`` has no ``volumes``, when
    a volume is only partly in the split, or when a slice of the split belongs to no volume.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "test", transform: Callable | None = None, validate: bool = True
    ):
        self.slices = SegmentationFolder(root, split=split, transform=transform, validate=validate)
        self.root, self.split = self.slices.root, split
        self.meta = self.slices.meta
        self.classes, self.num_classes = self.slices.classes, self.slices.num_classes
        self.channels = self.slices.channels
        volumes = self.meta.get("volumes")
        if not isinstance(volumes, dict) or not volumes:
            raise DatasetError(
                f"{self.root}/dataset.json has no 'volumes' entry, so slices cannot be grouped into "
                "volumes; prepare the dataset with its data_scripts module (acdc, synapse, covid19_ct)"
            )
        index = {n: i for i, n in enumerate(self.slices.names)}
        self.names: list[str] = []
        self._indices: list[list[int]] = []
        used: set[str] = set()
        for vol, names in volumes.items():
            inside = [n for n in names if n in index]
            if not inside:
                continue
            if len(inside) != len(names):
                raise DatasetError(
                    f"volume {vol!r} has only {len(inside)} of its {len(names)} slices in split "
                    f"{split!r} of {self.root}; a split for per-volume evaluation must hold "
                    "whole volumes"
                )
            self.names.append(vol)
            self._indices.append([index[n] for n in names])
            used.update(names)
        stray = [n for n in self.slices.names if n not in used]
        if stray:
            raise DatasetError(
                f"split {split!r} of {self.root} has slices that belong to no volume in dataset.json: "
                f"{stray[:5]}; use SegmentationFolder for slice-wise data"
            )
        spacing = self.meta.get("spacing") or {}
        self.spacing: dict[str, list[float] | None] = {v: spacing.get(v) for v in self.names}

    def __len__(self) -> int:
        return len(self.names)

    def slice_names(self, index: int) -> list[str]:
        """The slice names of volume ``index``, in order."""
        return [self.slices.names[i] for i in self._indices[index]]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        items = [self.slices[i] for i in self._indices[index]]
        shapes = {tuple(im.shape) for im, _ in items}
        if len(shapes) != 1:
            raise DatasetError(
                f"volume {self.names[index]!r} has slices of different sizes {sorted(shapes)}; pass a "
                "transform that resizes every slice to one size"
            )
        image = torch.stack([im.as_subclass(torch.Tensor) for im, _ in items])
        label = torch.stack([m.as_subclass(torch.Tensor) for _, m in items]).long()
        return image, label, self.names[index]

    def __repr__(self) -> str:
        return (
            f"VolumeDataset(root={str(self.root)!r}, split={self.split!r}, volumes={len(self)}, "
            f"slices={len(self.slices)}, classes={self.classes})"
        )
