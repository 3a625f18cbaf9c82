"""The common polyp benchmark (PraNet split), as M2SNet Table I uses it.

Training: 900 Kvasir-SEG + 550 CVC-ClinicDB images (1450). Testing: CVC-300 (CVC-T, 60),
CVC-ClinicDB (the other 62), CVC-ColonDB (380), ETIS-LaribPolypDB (196) and Kvasir (the other
100): 798 images. The split exists only as the PraNet archives (``TrainDataset.zip``,
``TestDataset.zip``, shared from Google Drive by the PraNet authors), so this is a manual
download; no checksum is published, we record the sha256 of what the user passes.

Raw layout::

    TrainDataset/image/*.png  TrainDataset/mask/*.png        (also images/ masks/)
    TestDataset/<set>/images/*.png  TestDataset/<set>/masks/*.png

Sample names are ``<subset>__<stem>`` (``train__1``, ``CVC-ClinicDB__1``): the subsets reuse
stems. Splits: ``train_full`` (the 1450), ``test`` (all five), and ``test_<set>`` for each test set;
``val`` = 145 of ``train_full`` held out with a fixed seed (PraNet has no validation set) and
``train`` = the other 1305. Masks
resized by the PraNet authors carry intermediate values: thresholded at 128, reported.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, add_validation, find_dir, load_binary_mask, load_image, pair_files, reporter

TEST_SETS = {"CVC-300": 60, "CVC-ClinicDB": 62, "CVC-ColonDB": 380, "ETIS-LaribPolypDB": 196, "Kvasir": 100}
EXPECTED = {
    "total": 1450 + 798,
    "train_full": 1450,
    "train": 1305,
    "val": 145,
    "test": 798,
    **{f"test_{k}": v for k, v in TEST_SETS.items()},
}

INFO = DatasetInfo(
    name="polyp-benchmark",
    title="Polyp benchmark (PraNet split: Kvasir, CVC-ClinicDB, CVC-ColonDB, ETIS, CVC-300)",
    homepage="https://github.com/DengPingFan/PraNet",
    licence="Each source dataset's terms apply (research use; cite Kvasir-SEG, CVC-ClinicDB, CVC-ColonDB, "
    "ETIS-LaribPolypDB, CVC-300 and PraNet).",
    citation="D.-P. Fan et al., PraNet: Parallel reverse attention network for polyp segmentation, MICCAI 2020.",
    used_by="M2SNet Table I",
    size="1450 train + 798 test images (about 400 MB)",
    files=(RawFile("TrainDataset.zip"), RawFile("TestDataset.zip")),
    manual="Download TrainDataset.zip and TestDataset.zip from the links in the PraNet README "
    "(Google Drive; section 'Training/Testing'), then pass both: --raw TrainDataset.zip TestDataset.zip.",
)


def _pair_dir(d: Path) -> tuple[Path, Path] | None:
    for i, m in (("image", "mask"), ("images", "masks")):
        if (d / i).is_dir() and (d / m).is_dir():
            return d / i, d / m
    return None


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare the PraNet train/test archives (or folders) into one dataset with per-set test splits."""
    with open_raw(INFO, raw) as inputs:
        train = find_dir(
            inputs.dirs,
            lambda d: d.name == "TrainDataset" and _pair_dir(d) is not None,
            "TrainDataset/image and TrainDataset/mask",
        )
        test = find_dir(inputs.dirs, lambda d: d.name == "TestDataset", "TestDataset/")
        subsets = {"train": _pair_dir(train)}
        for s in sorted(p.name for p in test.iterdir() if p.is_dir()):
            if s not in TEST_SETS:
                raise VerificationError(f"{test / s}: unknown test set; expected {sorted(TEST_SETS)}")
            pd = _pair_dir(test / s)
            if pd is None:
                raise VerificationError(f"{test / s}: no images/ and masks/ folders")
            subsets[s] = pd
        splits: dict[str, list[str]] = {}
        with prepared_writer(
            INFO,
            root,
            ["background", "polyp"],
            3,
            inputs,
            EXPECTED,
            allow_partial,
            split_note="PraNet TrainDataset/TestDataset lists",
        ) as w:
            for subset, (idir, mdir) in subsets.items():
                key = "train" if subset == "train" else f"test_{subset}"
                for stem, (img, msk) in sorted(pair_files(idir, mdir).items()):
                    name = f"{subset}__{stem}"
                    w.add(name, load_image(img, report=reporter(w, name)), load_binary_mask(msk, reporter(w, name)))
                    splits.setdefault(key, []).append(name)
            splits["test"] = [n for k, v in splits.items() if k.startswith("test_") for n in v]
            w.set_splits(add_validation(splits))
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
