"""Kvasir-SEG (Jha et al., MMM 2020): 1000 colonoscopy images with polyp masks.

Raw: ``kvasir-seg.zip`` from Simula (``Kvasir-SEG/images/*.jpg``, ``Kvasir-SEG/masks/*.jpg``,
``kavsir_bboxes.json``). Masks are JPEG, so their values spread around 0 and 255: they are
thresholded at 128 and the repair is reported. No checksum is published: we store ``None``
and record the sha256 of the archive the user got in ``dataset.json``.

Splits: ``all`` (1000) and ``train_full``/``test`` = 880/120 drawn with ``random.Random(0)`` over
the sorted names, the proportions of Jha et al. (their list is not distributed); ``val`` = 88
of ``train_full`` held out (:func:`~data_scripts.prepare.add_validation`), ``train`` = the other 792. M2SNet
Table I uses the PraNet benchmark split instead: see :mod:`data_scripts.polyp_benchmark`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import add_validation, find_dir, load_binary_mask, load_image, pair_files, reporter, seeded_split

INFO = DatasetInfo(
    name="kvasir-seg",
    title="Kvasir-SEG polyp segmentation",
    homepage="https://datasets.simula.no/kvasir-seg/",
    licence="Research and educational use; cite Jha et al. (MMM 2020). Commercial use needs permission.",
    citation="D. Jha et al., Kvasir-SEG: A segmented polyp dataset, MMM 2020, pp. 451-462.",
    used_by="M2SNet Table I (via the polyp benchmark)",
    size="1000 images (46 MB zip)",
    files=(RawFile("kvasir-seg.zip", ("https://datasets.simula.no/downloads/kvasir-seg.zip",)),),
)
EXPECTED = {"total": 1000, "train_full": 880, "test": 120, "train": 792, "val": 88}


def _is_layout(d: Path) -> bool:
    return (d / "images").is_dir() and (d / "masks").is_dir()


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare Kvasir-SEG from the zip or the extracted folder into ``root``."""
    with open_raw(INFO, raw) as inputs:
        base = find_dir(inputs.dirs, _is_layout, "Kvasir-SEG/images and Kvasir-SEG/masks")
        pairs = pair_files(base / "images", base / "masks")
        with prepared_writer(
            INFO,
            root,
            ["background", "polyp"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="train_full/test 880/120 drawn with random.Random(0) over sorted names; val = 10% of train_full",
        ) as w:
            for name, (img, msk) in sorted(pairs.items()):
                w.add(name, load_image(img, report=reporter(w, name)), load_binary_mask(msk, reporter(w, name)))
            n_test = max(1, round(len(w.names) * 0.12))
            w.set_splits(
                {"all": sorted(w.names), **add_validation(seeded_split(w.names, {"test": n_test, "train": 0}, seed=0))}
            )
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
