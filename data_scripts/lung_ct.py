"""Lung CT slices as MS-Former uses them: the Kaggle set "Finding and Measuring Lungs in CT
Data" prepared as in Azad et al. 2019 (BCDU-Net): 2D axial slices extracted from the 3D CT
volumes with their lung masks, and the first 700 slices kept.

Raw (manual: Kaggle login): the Kaggle archive or its ``3d_images/`` folder with
``IMG_0002.nii.gz`` ... and ``MASK_0002.nii.gz`` ... Volumes are taken in sorted order and
their axial slices in order (canonical orientation, radiological display, lung window level
-600 HU / width 1500 HU; see :mod:`data_scripts.volume`); masks > 0 are lung.

Splits: ``test`` = ``all`` = the first ``first`` slices (700): MS-Former is self-supervised
and evaluates on them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError
from .volume import LUNG_WINDOW, axial_slices, ct_to_uint8, load_nifti, nifti_stem

INFO = DatasetInfo(
    name="lung-ct",
    title="Kaggle lung CT (Finding and Measuring Lungs in CT Data), first 700 slices",
    homepage="https://www.kaggle.com/datasets/kmader/finding-lungs-in-ct-data",
    licence="Kaggle dataset terms (see the dataset page); cite Azad et al. 2019 for the preparation.",
    citation="R. Azad, M. Asadi-Aghbolaghi, M. Fathy, S. Escalera, Bi-directional ConvLSTM U-Net with densley "
    "connected convolutions, ICCV Workshops 2019.",
    used_by="MS-Former (lung segmentation), MMCFormer",
    size="4 CT volumes (about 1 GB); 700 slices kept",
    files=(RawFile("finding-lungs-in-ct-data.zip"),),
    manual="Log in to Kaggle, download the dataset 'kmader/finding-lungs-in-ct-data' (archive.zip) and pass it "
    "(or its extracted 3d_images/ folder) with --raw.",
)


def prepare(raw, root=None, *, allow_partial: bool = False, first: int = 700) -> Path:
    """Prepare the first ``first`` axial slices of the Kaggle lung CT volumes into ``root``."""
    with open_raw(INFO, raw) as inputs:
        files = sorted(p for d in inputs.dirs for p in d.rglob("*.nii*"))
        imgs = {nifti_stem(p)[4:]: p for p in files if nifti_stem(p).startswith("IMG_")}
        masks = {nifti_stem(p)[5:]: p for p in files if nifti_stem(p).startswith("MASK_")}
        if not imgs:
            raise VerificationError("no 3d_images/IMG_*.nii.gz found in --raw")
        if set(imgs) != set(masks):
            raise VerificationError(f"volumes without masks: {sorted(set(imgs) ^ set(masks))}")
        volumes: dict[str, list[str]] = {}
        with prepared_writer(
            INFO,
            root,
            ["background", "lung"],
            1,
            inputs,
            {"total": first},
            allow_partial,
            window={"level": LUNG_WINDOW[0], "width": LUNG_WINDOW[1], "units": "HU"},
            volumes=volumes,
            split_note=f"the first {first} slices, volumes in sorted order",
        ) as w:
            for key in sorted(imgs):
                if len(w.names) >= first:
                    break
                ct, _ = load_nifti(imgs[key])
                lab, _ = load_nifti(masks[key])
                if ct.shape != lab.shape:
                    raise VerificationError(f"{imgs[key].name} and {masks[key].name} differ in shape")
                img8 = ct_to_uint8(ct, lambda what, k=key: w.report_repair(f"IMG_{k}", what))
                lab8 = (lab > 0).astype(np.uint8)
                for z, (im, lb) in enumerate(zip(axial_slices(img8), axial_slices(lab8))):
                    if len(w.names) >= first:
                        break
                    name = f"IMG_{key}_z{z:03d}"
                    w.add(name, im, lb)
                    volumes.setdefault(f"IMG_{key}", []).append(name)
            w.set_splits({"all": list(w.names), "test": list(w.names)})
    return w.root


def _args(p):
    p.add_argument("--first", type=int, default=700, help="number of slices kept (MS-Former: 700)")


main = make_main(INFO, prepare, _args)

if __name__ == "__main__":
    sys.exit(main())
