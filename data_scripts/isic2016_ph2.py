"""ISIC 2016 + PH2 (PDCR Table I): train on the 900 ISIC 2016 Part 1 training images, test on
the 200 PH2 images. Raw: the two ISIC 2016 training zips (downloadable) and the extracted PH2
folder (manual, see :mod:`data_scripts.ph2`), all passed with ``--raw``.

Splits: ``train_full`` (900 ISIC), ``test`` (200 PH2), ``val`` = 90 of ``train_full`` held out with a
fixed seed, ``train`` = the other 810.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import isic2016, ph2
from .common import DatasetInfo, make_main, open_raw, prepared_writer
from .prepare import add_validation, load_binary_mask, load_image, reporter

EXPECTED = {"total": 1100, "train_full": 900, "test": 200, "train": 810, "val": 90}

INFO = DatasetInfo(
    name="isic2016-ph2",
    title="ISIC 2016 train + PH2 test",
    homepage=isic2016.INFO.homepage + " and " + ph2.INFO.homepage,
    licence=f"ISIC 2016: {isic2016.INFO.licence} PH2: {ph2.INFO.licence}",
    citation=f"{isic2016.INFO.citation} {ph2.INFO.citation}",
    used_by="PDCR Table I",
    size="900 + 200 images",
    files=isic2016.INFO.files[:2] + ph2.INFO.files,
    manual="Pass the two ISIC 2016 training zips (python -m data_scripts.isic2016 --download fetches them into "
    "the cache) and the extracted PH2Dataset folder: --raw ISBI2016_ISIC_Part1_Training_Data.zip "
    "ISBI2016_ISIC_Part1_Training_GroundTruth.zip PH2Dataset/",
)


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare ISIC 2016 training (train) + PH2 (test) into ``root``."""
    with open_raw(INFO, raw) as inputs:
        train = isic2016.isic_pairs(inputs.dirs, *isic2016.PARTS["train"])
        test = list(ph2.iter_pairs(inputs.dirs))
        with prepared_writer(
            INFO,
            root,
            ["background", "lesion"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="PDCR Table I: ISIC 2016 official training set / PH2 all 200",
        ) as w:
            train_names = isic2016.add_part(w, train)
            for name, img, msk in test:
                w.add(name, load_image(img, report=reporter(w, name)), load_binary_mask(msk, reporter(w, name)))
            w.set_splits(add_validation({"train": train_names, "test": [n for n, _, _ in test]}))
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
