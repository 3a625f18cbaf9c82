"""ISIC 2017 Part 1, lesion segmentation (Codella et al., ISBI 2018): 2000 training, 150
validation, 600 test images, the official split (PDCR Table I: 2000 train, 600 test).

Raw: six zips from the ISIC challenge bucket (no published checksums: we store ``None`` and
record the sha256 of what the user got). The training folder also holds
``ISIC_xxxxxxx_superpixels.png`` files and a metadata CSV: both ignored. Masks are
``ISIC_xxxxxxx_segmentation.png`` (0/255).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .isic2016 import add_part, isic_pairs

BUCKET = "https://isic-challenge-data.s3.amazonaws.com/2017/"
PARTS = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part1_GroundTruth"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part1_GroundTruth"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part1_GroundTruth"),
}
EXPECTED = {"total": 2750, "train": 2000, "val": 150, "test": 600}

INFO = DatasetInfo(
    name="isic2017",
    title="ISIC 2017 Part 1 lesion segmentation",
    homepage="https://challenge.isic-archive.com/data/#2017",
    licence="CC BY-NC 4.0 (ISIC archive); cite Codella et al. 2018.",
    citation="N. Codella et al., Skin lesion analysis toward melanoma detection: a challenge at ISBI 2017, ISBI 2018.",
    used_by="PDCR Table I (MS-Former tunes its loss weights on 10 ISIC 2017 images)",
    size="2750 images (about 6 GB)",
    files=tuple(RawFile(f"{d}.zip", (BUCKET + f"{d}.zip",)) for pair in PARTS.values() for d in pair),
)


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare ISIC 2017 Part 1 (official train/val/test) into ``root``."""
    with open_raw(INFO, raw) as inputs:
        pairs = {split: isic_pairs(inputs.dirs, *folders) for split, folders in PARTS.items()}
        with prepared_writer(
            INFO,
            root,
            ["background", "lesion"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="official ISIC 2017 Part 1 training/validation/test (v2)",
        ) as w:
            w.set_splits({split: add_part(w, p) for split, p in pairs.items()})
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
