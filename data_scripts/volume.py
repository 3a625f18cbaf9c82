"""Helpers for 3D sources (NIfTI with nibabel, h5 with h5py): loading, slicing to 2D, intensity
mapping to uint8, and recording volumes in ``dataset.json`` (``"volumes": {vol: [slice names]}``).

Orientation: NIfTI volumes are reoriented to the closest canonical (RAS+) orientation and
axial slices are shown in the radiological convention (patient's right on the image's left,
anterior at the top): ``image[row, col] = data[X-1-col, Y-1-row, z]``.

CT intensities (documented windowing): volumes stored in Hounsfield units are mapped with the
lung window, level -600 HU and width 1500 HU (``[-1350, 150]`` -> 0..255). Volumes whose values
already lie in 0..255 (the Radiopaedia cases of Zenodo 3757476 are stored that way) are used
as 8-bit grey values without a window, and this is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .prepare import Reporter, VerificationError, window

__all__ = ["load_nifti", "axial_slices", "ct_to_uint8", "unit_to_uint8", "label_to_uint8", "LUNG_WINDOW", "nifti_stem"]

LUNG_WINDOW = (-600.0, 1500.0)  # level, width in HU


def nifti_stem(path: Path) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def load_nifti(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """``(data, zooms)`` of a NIfTI file in the closest canonical orientation (float32)."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for broken files
        raise VerificationError(f"cannot read NIfTI {path}: {exc}; the file is damaged, re-extract it") from exc
    if data.ndim != 3:
        raise VerificationError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data, tuple(float(z) for z in img.header.get_zooms()[:3])


def axial_slices(data: np.ndarray) -> list[np.ndarray]:
    """Axial slices of a canonical (X, Y, Z) volume, radiological display orientation."""
    return [np.ascontiguousarray(data[::-1, ::-1, z].T) for z in range(data.shape[2])]


def ct_to_uint8(data: np.ndarray, report: Reporter, level_width: Sequence[float] = LUNG_WINDOW) -> np.ndarray:
    """CT volume -> uint8 (lung window for HU data; 0..255 data used as is, reported)."""
    lo, hi = float(data.min()), float(data.max())
    if lo >= 0.0 and hi <= 255.0:
        report("volume not in Hounsfield units (values in 0..255): used as 8-bit grey values, no window")
        return np.clip(np.rint(data), 0, 255).astype(np.uint8)
    return window(data, *level_width)


def unit_to_uint8(data: np.ndarray, path: Path | str = "") -> np.ndarray:
    """Float image in [0, 1] (SSL4MIS / TransUNet preprocessing) -> uint8 ``round(x * 255)``."""
    data = np.asarray(data, dtype=np.float64)
    if data.size and (data.min() < -1e-3 or data.max() > 1 + 1e-3):
        raise VerificationError(
            f"{path}: image values {data.min():.3g}..{data.max():.3g} are not in [0, 1]; "
            "is this the preprocessed (h5/npz) release?"
        )
    return np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8)


def label_to_uint8(data: np.ndarray, num_classes: int, path: Path | str = "") -> np.ndarray:
    """Integer label array -> uint8, checking the values are class indices."""
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        if not np.all(arr == np.rint(arr)):
            raise VerificationError(f"{path}: label has non-integer values")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise VerificationError(
            f"{path}: label values {sorted(np.unique(arr).tolist())[:10]} outside 0..{num_classes - 1}"
        )
    return arr.astype(np.uint8)
