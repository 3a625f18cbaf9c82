"""GOALS 2022 (Fang et al., MICCAI 2022 challenge): circumpapillary OCT B-scans with three
layers: retinal nerve fibre layer (RNFL), ganglion cell-inner plexiform layer (GCIPL), choroid.

Raw (manual: registration on the challenge site): the training part with labels::

    GOALS2022-Train/Train/Image/0001.png
    GOALS2022-Train/Train/Layer_Masks/0001.png

Layer masks are grey-value coded: 0 = RNFL, 80 = GCIPL, 160 = choroid, 255 = background
(the challenge's description). They are mapped to class indices 1, 2, 3 and 0; any other
value is an error (so a different coding is caught, never guessed).

Splits: the 100 labelled training images (the validation/test labels were not released):
``all`` and ``train``/``val`` = 80/20 drawn with ``random.Random(0)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, find_dir, load_array, load_image, pair_files, reporter, seeded_split

CODES = {255: 0, 0: 1, 80: 2, 160: 3}
EXPECTED = {"total": 100, "train": 80, "val": 20}

INFO = DatasetInfo(
    name="goals",
    title="GOALS 2022 OCT layer segmentation",
    homepage="https://aistudio.baidu.com/aistudio/competition/detail/230",
    licence="Challenge data: research use after registration; cite Fang et al. 2022.",
    citation="H. Fang, F. Li, H. Fu, J. Wu, X. Zhang, Y. Xu, Dataset and evaluation algorithm design for GOALS "
    "challenge, arXiv:2207.14447, 2022.",
    used_by="M2SNet Table V",
    size="100 labelled training B-scans (about 100 MB)",
    files=(RawFile("GOALS2022-Train.zip"),),
    manual="Register for the GOALS challenge (homepage, or its Grand Challenge mirror goals.grand-challenge.org), "
    "download GOALS2022-Train.zip and pass it with --raw.",
)


def decode_layers(arr: np.ndarray, path: Path) -> np.ndarray:
    """Grey-coded layer mask -> class indices (``CODES``); unknown values are an error."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    out = np.zeros(arr.shape, np.uint8)
    known = np.zeros(arr.shape, bool)
    for value, cls in CODES.items():
        hit = arr == value
        out[hit] = cls
        known |= hit
    if not known.all():
        bad = sorted(np.unique(arr[~known]).tolist())[:8]
        raise VerificationError(
            f"{path}: mask values {bad} are not GOALS layer codes {sorted(CODES)}; "
            "is this a GOALS2022 Layer_Masks file?"
        )
    return out


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare the labelled GOALS 2022 training set into ``root``."""
    with open_raw(INFO, raw) as inputs:
        base = find_dir(
            inputs.dirs,
            lambda d: (d / "Image").is_dir() and (d / "Layer_Masks").is_dir(),
            "Train/Image and Train/Layer_Masks",
        )
        pairs = pair_files(base / "Image", base / "Layer_Masks")
        with prepared_writer(
            INFO,
            root,
            ["background", "RNFL", "GCIPL", "choroid"],
            1,
            inputs,
            EXPECTED,
            allow_partial,
            mask_coding={str(k): v for k, v in CODES.items()},
            split_note="train/val 80/20 drawn with random.Random(0)",
        ) as w:
            for stem, (img, msk) in sorted(pairs.items()):
                w.add(
                    stem,
                    load_image(img, channels=1, report=reporter(w, stem)),
                    decode_layers(load_array(msk, reporter(w, stem)), msk),
                )
            n_val = max(1, round(len(w.names) * 0.2))
            w.set_splits({"all": sorted(w.names), **seeded_split(w.names, {"val": n_val, "train": 0}, seed=0)})
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
