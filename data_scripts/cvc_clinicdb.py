"""CVC-ClinicDB (Bernal et al., CMIG 2015): 612 colonoscopy frames (384x288) with polyp masks.

Raw (manual: no stable official URL): the folder or archive with ``Original/`` and
``Ground Truth/`` (TIFF in the original release, PNG in the common re-distribution), files
named ``1.tif`` ... ``612.tif``. Masks are 0/255; other values are thresholded at 128 and
reported.

Splits: ``all`` (612) and ``train_full``/``test`` = 550/62 drawn with ``random.Random(0)``, the
sizes of the PraNet split (the benchmark's own list is in :mod:`data_scripts.polyp_benchmark`);
``val`` = 55 of ``train_full`` held out, ``train`` = the other 495.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import add_validation, find_dir, load_binary_mask, load_image, pair_files, reporter, seeded_split

INFO = DatasetInfo(
    name="cvc-clinicdb",
    title="CVC-ClinicDB polyp segmentation",
    homepage="https://polyp.grand-challenge.org/CVCClinicDB/",
    licence="Research use; cite Bernal et al. (CMIG 2015).",
    citation="J. Bernal et al., WM-DOVA maps for accurate polyp highlighting in colonoscopy: validation vs. "
    "saliency maps from physicians, Comput. Med. Imaging Graph. 43, 2015.",
    used_by="M2SNet Table I (via the polyp benchmark)",
    size="612 images (about 170 MB)",
    files=(RawFile("CVC-ClinicDB.zip"),),
    manual="Download CVC-ClinicDB from the homepage (request link) and pass the archive or the folder with "
    "'Original/' and 'Ground Truth/'. A .rar must be extracted first (unrar x / 7-Zip).",
)
EXPECTED = {"total": 612, "train_full": 550, "test": 62, "train": 495, "val": 55}


def _is_layout(d: Path) -> bool:
    return (d / "Original").is_dir() and (d / "Ground Truth").is_dir()


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare CVC-ClinicDB from its archive or folder into ``root``."""
    with open_raw(INFO, raw) as inputs:
        base = find_dir(inputs.dirs, _is_layout, "CVC-ClinicDB 'Original/' and 'Ground Truth/'")
        pairs = pair_files(base / "Original", base / "Ground Truth")
        with prepared_writer(
            INFO,
            root,
            ["background", "polyp"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="train_full/test 550/62 drawn with random.Random(0) over sorted names; val = 10% of train_full",
        ) as w:
            for stem, (img, msk) in sorted(pairs.items()):
                w.add(stem, load_image(img, report=reporter(w, stem)), load_binary_mask(msk, reporter(w, stem)))
            n_test = max(1, round(len(w.names) * 62 / 612))
            w.set_splits(
                {"all": sorted(w.names), **add_validation(seeded_split(w.names, {"test": n_test, "train": 0}, seed=0))}
            )
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
