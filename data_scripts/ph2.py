"""PH2 dermoscopy (Mendonça et al., EMBC 2013): 200 melanocytic lesions with lesion masks.

Raw (manual: ``PH2Dataset.rar`` from the ADDI project page, a RAR that Python cannot unpack;
extract it with ``unrar x`` or 7-Zip and pass the folder, or a zip/tar you made of it)::

    PH2Dataset/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp
    PH2Dataset/PH2 Dataset images/IMD002/IMD002_lesion/IMD002_lesion.bmp

Quirks: masks are 1-bit BMPs, but at least one is a 24-bit RGB image with values 0/255
(reduced to one channel, reported); image sizes vary around 767x576 (kept as they are).

Splits: ``all`` = ``test`` = the 200 images (MS-Former evaluates on all 200; PDCR Table I
uses PH2 as the test set of ISIC 2016 + PH2, see :mod:`data_scripts.isic2016_ph2`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, find_dir, load_binary_mask, load_image, reporter

EXPECTED = {"total": 200, "all": 200, "test": 200}

INFO = DatasetInfo(
    name="ph2",
    title="PH2 dermoscopic image database",
    homepage="https://www.fc.up.pt/addi/ph2%20database.html",
    licence="Free for research and education after accepting the terms on the homepage; cite Mendonça et al. 2013.",
    citation="T. Mendonça et al., PH2 - A dermoscopic image database for research and benchmarking, EMBC 2013, "
    "pp. 5437-5440.",
    used_by="MS-Former (all 200), PDCR Table I (ISIC 2016 + PH2 test), MMCFormer",
    size="200 images (about 150 MB RAR)",
    files=(RawFile("PH2Dataset.rar"),),
    manual="Fill in the form on the homepage and download PH2Dataset.rar. Extract it (unrar x PH2Dataset.rar, "
    "or 7-Zip) and pass the folder 'PH2Dataset' with --raw.",
)


def find_cases(dirs: Sequence[Path]) -> Path:
    """The folder holding the ``IMDxxx`` case folders (``PH2 Dataset images``)."""
    return find_dir(
        dirs,
        lambda d: any(p.name.startswith("IMD") and p.is_dir() for p in d.iterdir()),
        "'PH2 Dataset images/IMDxxx/' case folders",
    )


def iter_pairs(dirs: Sequence[Path]) -> Iterator[tuple[str, Path, Path]]:
    """``(case, image.bmp, lesion.bmp)`` for every ``IMDxxx`` case folder, sorted."""
    base = find_cases(dirs)
    for case in sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("IMD")):
        img = case / f"{case.name}_Dermoscopic_Image" / f"{case.name}.bmp"
        msk = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
        for f in (img, msk):
            if not f.is_file():
                raise VerificationError(f"{case}: {f.relative_to(case)} is missing; re-extract PH2Dataset.rar")
        yield case.name, img, msk


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare PH2 from the extracted ``PH2Dataset`` folder (or a zip/tar of it) into ``root``."""
    with open_raw(INFO, raw) as inputs:
        with prepared_writer(INFO, root, ["background", "lesion"], 3, inputs, EXPECTED, allow_partial) as w:
            for name, img, msk in iter_pairs(inputs.dirs):
                w.add(name, load_image(img, report=reporter(w, name)), load_binary_mask(msk, reporter(w, name)))
            w.set_splits({"all": list(w.names), "test": list(w.names)})
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
