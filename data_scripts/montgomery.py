"""Montgomery County chest X-ray set (Jaeger et al., QIMS 2014): 138 posterior-anterior chest
X-rays (80 normal ``*_0.png``, 58 with tuberculosis ``*_1.png``) with manual lung masks.

Raw: ``NLM-MontgomeryCXRSet.zip`` from the NLM (no published checksum: we store ``None`` and
record the sha256 of what the user got)::

    MontgomerySet/CXR_png/MCUCXR_0001_0.png
    MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png
    MontgomerySet/ManualMask/rightMask/MCUCXR_0001_0.png

The left and right lung masks are merged by union into one "lung" class (reported). Images
are grayscale (1 channel), about 4020x4892, kept at full size.

Splits: ``train_full``/``test`` = 80/58 as PDCR Table I, drawn with ``random.Random(0)`` over the
sorted names (PDCR publishes no list); ``val`` = 8 of ``train_full`` held out, ``train`` = the
other 72; and ``all``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import (
    VerificationError,
    add_validation,
    find_dir,
    load_image,
    pair_files,
    reporter,
    seeded_split,
    union_masks,
)

EXPECTED = {"total": 138, "train_full": 80, "test": 58, "train": 72, "val": 8}

INFO = DatasetInfo(
    name="montgomery",
    title="Montgomery County chest X-ray set (lung masks)",
    homepage="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",
    licence="Public domain (U.S. National Library of Medicine); cite Jaeger et al. 2014.",
    citation="S. Jaeger et al., Two public chest X-ray datasets for computer-aided screening of pulmonary diseases, "
    "Quant. Imaging Med. Surg. 4(6), 475-477, 2014.",
    used_by="PDCR Table I (MC)",
    size="138 images (about 600 MB)",
    files=(
        RawFile("NLM-MontgomeryCXRSet.zip", ("https://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",)),
    ),
)


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare the Montgomery set (left+right lungs merged) into ``root``."""
    with open_raw(INFO, raw) as inputs:
        base = find_dir(
            inputs.dirs,
            lambda d: (d / "CXR_png").is_dir() and (d / "ManualMask").is_dir(),
            "MontgomerySet/CXR_png and MontgomerySet/ManualMask",
        )
        left = pair_files(base / "CXR_png", base / "ManualMask" / "leftMask", exts=(".png",))
        right = pair_files(base / "CXR_png", base / "ManualMask" / "rightMask", exts=(".png",))
        if set(left) != set(right):
            raise VerificationError(f"{base}: left and right masks cover different images")
        with prepared_writer(
            INFO,
            root,
            ["background", "lung"],
            1,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="train_full/test 80/58 drawn with random.Random(0) over sorted names; val = 10% of train_full",
        ) as w:
            for stem in sorted(left):
                img, lm = left[stem]
                mask = union_masks([lm, right[stem][1]], reporter(w, stem))
                w.add(stem, load_image(img, channels=1, report=reporter(w, stem)), mask)
            n_test = max(1, round(len(w.names) * 58 / 138))
            w.set_splits(
                {"all": sorted(w.names), **add_validation(seeded_split(w.names, {"test": n_test, "train": 0}, seed=0))}
            )
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
