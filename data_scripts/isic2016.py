"""ISIC 2016 Part 1, lesion segmentation (Gutman et al., 2016): 900 training and 379 test
dermoscopy images with binary masks, the official split (PDCR Table I).

Raw: four zips from the ISIC challenge bucket (no published checksums: we store ``None`` and
record the sha256 of each archive the user got)::

    ISBI2016_ISIC_Part1_Training_Data/ISIC_0000000.jpg
    ISBI2016_ISIC_Part1_Training_GroundTruth/ISIC_0000000_Segmentation.png
    ISBI2016_ISIC_Part1_Test_Data/...          ISBI2016_ISIC_Part1_Test_GroundTruth/...

Splits: ``train_full`` (900) and ``test`` (379) are the official ones; ``val`` = 90 of
``train_full`` held out with a fixed seed (ISIC 2016 has no validation set), ``train`` the other 810.

Images keep their original size (up to about 4000 px wide). Masks are 0/255.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import add_validation, find_dir, load_binary_mask, load_image, pair_files, reporter

BUCKET = "https://isic-challenge-data.s3.amazonaws.com/2016/"
PARTS = {
    "train": ("ISBI2016_ISIC_Part1_Training_Data", "ISBI2016_ISIC_Part1_Training_GroundTruth"),
    "test": ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth"),
}
EXPECTED = {"total": 1279, "train_full": 900, "test": 379, "train": 810, "val": 90}

INFO = DatasetInfo(
    name="isic2016",
    title="ISIC 2016 Part 1 lesion segmentation",
    homepage="https://challenge.isic-archive.com/data/#2016",
    licence="CC BY-NC 4.0 (ISIC archive); cite Gutman et al. 2016.",
    citation="D. Gutman et al., Skin lesion analysis toward melanoma detection: a challenge at ISBI 2016, "
    "arXiv:1605.01397.",
    used_by="PDCR Table I",
    size="1279 images (about 1.3 GB)",
    files=tuple(RawFile(f"{d}.zip", (BUCKET + f"{d}.zip",)) for pair in PARTS.values() for d in pair),
)


def isic_pairs(dirs: Sequence[Path], data: str, truth: str) -> dict[str, tuple[Path, Path]]:
    """``{ISIC_xxxxxxx: (image.jpg, mask.png)}`` for one official part (``_superpixels.png`` ignored)."""
    idir = find_dir(dirs, lambda d: d.name == data, f"the folder {data}/")
    mdir = find_dir(dirs, lambda d: d.name == truth, f"the folder {truth}/")
    suffix = "_Segmentation" if any(p.stem.endswith("_Segmentation") for p in mdir.iterdir()) else "_segmentation"
    return pair_files(idir, mdir, mask_stem=lambda s: s + suffix, exts=(".jpg", ".jpeg"))


def add_part(w, pairs: dict[str, tuple[Path, Path]]) -> list[str]:
    names = []
    for name, (img, msk) in sorted(pairs.items()):
        w.add(name, load_image(img, report=reporter(w, name)), load_binary_mask(msk, reporter(w, name)))
        names.append(name)
    return names


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare ISIC 2016 Part 1 (official train/test) into ``root``."""
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
            split_note="official ISBI 2016 Part 1 training/test",
        ) as w:
            w.set_splits(add_validation({split: add_part(w, p) for split, p in pairs.items()}))
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
