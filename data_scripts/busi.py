"""BUSI breast ultrasound (Al-Dhabyani et al., Data in Brief 2020): 780 images in class folders
``benign/`` (437), ``malignant/`` (210), ``normal/`` (133).

Quirks handled: names with spaces and parentheses (``benign (12).png`` becomes the sample name
``benign_12``); several masks per image (``NAME_mask.png``, ``NAME_mask_1.png``, ...) merged by
union and reported; masks stored as 1-bit, 8-bit, RGB or RGBA images (reduced to one channel,
reported); ``normal`` images have empty masks. The official zip has no published checksum: we
store ``None`` and record the sha256 of the file the user got.

Splits: four-fold cross-validation as M2SNet Table IV (M2SNet Sec. IV-A follows [35], [36]; no
list is published). Folds are stratified by class, drawn with ``random.Random`` seeded by
``0-<class>`` over the sorted names: ``fold0``..``fold3`` hold the test images of each fold,
``fold0_train``..``fold3_train`` the other three folds; ``benign``/``malignant``/``normal``/``all``;
``train``/``val``/``test`` are fold 0 (``val`` = 10% of ``fold0_train`` held out) for a single run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, cv_splits, find_dir, load_image, reporter, union_masks

CLASSES = ("benign", "malignant", "normal")
EXPECTED = {"total": 780, "benign": 437, "malignant": 210, "normal": 133}

INFO = DatasetInfo(
    name="busi",
    title="BUSI breast ultrasound images",
    homepage="https://scholar.cu.edu.eg/?q=afahmy/pages/dataset",
    licence="Public for research (CC0 on the Kaggle mirror); cite Al-Dhabyani et al. (Data in Brief 2020).",
    citation="W. Al-Dhabyani, M. Gomaa, H. Khaled, A. Fahmy, Dataset of breast ultrasound images, "
    "Data in Brief 28, 104863, 2020.",
    used_by="M2SNet Table IV",
    size="780 images (about 200 MB)",
    files=(RawFile("Dataset_BUSI.zip", ("https://scholar.cu.edu.eg/Dataset_BUSI.zip",)),),
)
_MASK = re.compile(r"^(?P<base>.+)_mask(?:_(?P<k>\d+))?$")


def sample_name(stem: str) -> str:
    """``"benign (12)"`` -> ``"benign_12"``: spaces and parentheses removed, unique per image."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")
    if not out:
        raise VerificationError(f"cannot derive a sample name from {stem!r}")
    return out


def collect(folder: Path) -> dict[str, tuple[Path, list[Path]]]:
    """``{image stem: (image, [mask, mask_1, ...])}`` for one class folder."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() != ".png":
            continue
        m = _MASK.match(p.stem)
        if m:
            masks.setdefault(m["base"], []).append((int(m["k"] or 0), p))
        else:
            images[p.stem] = p
    orphans = sorted(set(masks) - set(images))
    missing = sorted(set(images) - set(masks))
    if orphans or missing:
        raise VerificationError(f"{folder}: images without a mask {missing[:5]}, masks without an image {orphans[:5]}")
    return {s: (images[s], [p for _, p in sorted(masks[s])]) for s in images}


def prepare(raw, root=None, *, allow_partial: bool = False, folds: int = 4, seed: int = 0) -> Path:
    """Prepare BUSI with ``folds``-fold stratified cross-validation splits into ``root``."""
    with open_raw(INFO, raw) as inputs:
        base = find_dir(
            inputs.dirs,
            lambda d: all((d / c).is_dir() for c in CLASSES),
            "the class folders benign/ malignant/ normal/",
        )
        strata: dict[str, str] = {}
        with prepared_writer(
            INFO,
            root,
            ["background", "lesion"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note=f"{folds}-fold CV stratified by class, seed {seed}",
            original_names={},
        ) as w:
            for cls in CLASSES:
                for stem, (img, mask_paths) in sorted(collect(base / cls).items()):
                    name = sample_name(stem)
                    mask = union_masks(mask_paths, reporter(w, name))
                    w.add(name, load_image(img, report=reporter(w, name)), mask)
                    w.meta["original_names"][name] = f"{cls}/{img.name}"
                    strata[name] = cls
            splits = {c: sorted(n for n, s in strata.items() if s == c) for c in CLASSES}
            w.set_splits({**splits, "all": sorted(w.names), **cv_splits(w.names, folds, seed, strata)})
    return w.root


def _args(p):
    p.add_argument("--folds", type=int, default=4, help="number of cross-validation folds (M2SNet: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")


main = make_main(INFO, prepare, _args)

if __name__ == "__main__":
    sys.exit(main())
