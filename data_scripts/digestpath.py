"""DigestPath 2019, task 2 (colonoscopy tissue segmentation; Da et al., MedIA 2022): 250
positive tissue images with lesion masks and 410 negative images without lesions.

Raw (manual: registration on the challenge site)::

    tissue-train-pos-v1/NAME.jpg   tissue-train-pos-v1/NAME_mask.jpg
    tissue-train-neg/NAME.jpg      (no mask: an empty mask is written)

Masks are JPEG: thresholded at 128, reported. Names contain spaces: sample names replace
every run of characters other than letters and digits with ``_`` (the mapping is kept in
``dataset.json`` ``original_names``). Images are large whole-slide crops, kept at full size.

Splits: five-fold cross-validation as PDCR Table I (which reports 952 training images: the
authors' tiling is not published, so we keep whole images): ``fold0``..``fold4`` (held out),
``fold{k}_train``, stratified by positive/negative with seed 0; ``pos``, ``neg``, ``all``;
``train``/``val``/``test`` are fold 0 (``val`` = 10% of ``fold0_train`` held out) for a single run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, cv_splits, find_dir, load_binary_mask, load_image, reporter

EXPECTED = {"total": 660, "pos": 250, "neg": 410}

INFO = DatasetInfo(
    name="digestpath",
    title="DigestPath 2019 colonoscopy tissue segmentation",
    homepage="https://digestpath2019.grand-challenge.org/",
    licence="Challenge data: non-commercial research use after registration; cite Da et al. 2022.",
    citation="Q. Da et al., DigestPath: a benchmark dataset with challenge review for the pathological detection "
    "and segmentation of digestive-system, Medical Image Analysis 80, 102485, 2022.",
    used_by="PDCR Table I",
    size="660 images (about 8 GB)",
    files=(RawFile("tissue-train-pos-v1.zip"), RawFile("tissue-train-neg.zip")),
    manual="Register on the DigestPath 2019 site, download the task 2 training data (tissue-train-pos-v1 and "
    "tissue-train-neg) and pass both archives or folders with --raw.",
)


def sample_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")


def prepare(raw, root=None, *, allow_partial: bool = False, folds: int = 5, seed: int = 0) -> Path:
    """Prepare DigestPath 2019 task 2 (positives with masks, negatives with empty masks) into ``root``."""
    with open_raw(INFO, raw) as inputs:
        pos = find_dir(inputs.dirs, lambda d: d.name.startswith("tissue-train-pos"), "tissue-train-pos-v1/")
        neg = find_dir(inputs.dirs, lambda d: d.name.startswith("tissue-train-neg"), "tissue-train-neg/")
        strata: dict[str, str] = {}
        with prepared_writer(
            INFO,
            root,
            ["background", "lesion"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            original_names={},
            split_note=f"{folds}-fold CV stratified pos/neg, seed {seed}",
        ) as w:
            for kind, folder in (("pos", pos), ("neg", neg)):
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
                masks = {p.stem[:-5]: p for p in files if p.stem.endswith("_mask")}
                for img in (p for p in files if not p.stem.endswith("_mask")):
                    name = sample_name(img.stem)
                    if name in strata:
                        raise VerificationError(f"{img}: sample name {name!r} is not unique")
                    image = load_image(img, report=reporter(w, name))
                    if kind == "pos":
                        if img.stem not in masks:
                            raise VerificationError(f"{img}: positive image without {img.stem}_mask.jpg")
                        mask = load_binary_mask(masks.pop(img.stem), reporter(w, name))
                    else:
                        mask = np.zeros(image.shape[:2], np.uint8)
                    w.add(name, image, mask)
                    w.meta["original_names"][name] = f"{folder.name}/{img.name}"
                    strata[name] = kind
                if masks:
                    raise VerificationError(f"{folder}: masks without an image: {sorted(masks)[:5]}")
            splits = {k: sorted(n for n, s in strata.items() if s == k) for k in ("pos", "neg")}
            w.set_splits({**splits, "all": sorted(w.names), **cv_splits(w.names, folds, seed, strata)})
    return w.root


def _args(p):
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (PDCR: 5)")
    p.add_argument("--seed", type=int, default=0)


main = make_main(INFO, prepare, _args)

if __name__ == "__main__":
    sys.exit(main())
