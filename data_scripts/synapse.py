"""Synapse multi-organ CT (MICCAI 2015 "Multi-Atlas Labeling Beyond the Cranial Vault", BTCV) in
the TransUNet preprocessing: 30 abdominal CT scans, 18 for training (2211 axial slices) and 12
for testing, eight organs.

Raw (manual: the BTCV data need a Synapse account; the TransUNet authors share the preprocessed
files on request)::

    train_npz/case0005_slice000.npz          keys image (float, HU clipped to [-125, 275] and
                                              scaled to [0, 1]), label (0..8)
    test_vol_h5/case0001.npy.h5              keys image, label of shape (slices, 512, 512)
    lists/lists_Synapse/train.txt, test_vol.txt   (optional; else every file found is used)

Labels (TransUNet's mapping): 1 aorta, 2 gallbladder, 3 left kidney, 4 right kidney, 5 liver,
6 pancreas, 7 spleen, 8 stomach. Images become uint8 ``round(x * 255)``. ``dataset.json`` gets
``volumes`` (case -> slice names in order) so that :class:`mslib.data.volumes.VolumeDataset`
evaluates per volume. Splits: ``train_full`` (18 cases) and ``test`` (12 cases), as MCSC Tab. R2;
``val`` = 2 of the 18 training cases held out with a fixed seed (TransUNet has no validation
set), ``train`` the other 16.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, add_validation, check_counts, find_dir, read_lines
from .volume import label_to_uint8, unit_to_uint8

CLASSES = [
    "background",
    "aorta",
    "gallbladder",
    "left kidney",
    "right kidney",
    "liver",
    "pancreas",
    "spleen",
    "stomach",
]
EXPECTED = {"train_full": 2211}
EXPECTED_CASES = {"train_cases": 18, "test_cases": 12}
_NPZ = re.compile(r"^(?P<case>case\d+)_slice(?P<i>\d+)$")

INFO = DatasetInfo(
    name="synapse",
    title="Synapse multi-organ CT (TransUNet preprocessing)",
    homepage="https://www.synapse.org/#!Synapse:syn3193805/wiki/217789",
    licence="Synapse BTCV terms of use (registration; research use); cite Landman et al. 2015 and TransUNet.",
    citation="B. Landman et al., MICCAI multi-atlas labeling beyond the cranial vault workshop and challenge, 2015; "
    "J. Chen et al., TransUNet, arXiv:2102.04306, 2021.",
    used_by="MCSC Tab. R2",
    size="18 training cases (2211 slices) + 12 test volumes (about 9 GB)",
    files=(RawFile("Synapse.zip"),),
    manual="Register on synapse.org for the BTCV 'Abdomen' data, then obtain the TransUNet-preprocessed "
    "'project_TransUNet/data/Synapse' folder (train_npz/, test_vol_h5/) as described in the TransUNet "
    "README and pass it with --raw.",
)


def _read_list(path: Path) -> list[str]:
    return read_lines(path)


def prepare(raw, root=None, *, allow_partial: bool = False) -> Path:
    """Prepare the TransUNet-style Synapse files into ``root``."""
    import h5py

    with open_raw(INFO, raw) as inputs:
        base = find_dir(
            inputs.dirs,
            lambda d: (d / "train_npz").is_dir() and (d / "test_vol_h5").is_dir(),
            "Synapse/train_npz and Synapse/test_vol_h5",
        )
        lists = [p for d in inputs.dirs for p in d.rglob("train.txt") if p.parent.name == "lists_Synapse"]
        if lists:
            train = _read_list(lists[0])
            test = _read_list(lists[0].with_name("test_vol.txt"))
        else:
            train = sorted(p.stem for p in (base / "train_npz").glob("*.npz"))
            test = sorted(p.name.split(".")[0] for p in (base / "test_vol_h5").glob("*.h5"))
        volumes: dict[str, list[str]] = {}
        with prepared_writer(
            INFO,
            root,
            CLASSES,
            1,
            inputs,
            EXPECTED,
            allow_partial,
            volumes=volumes,
            image_scaling="uint8 = round(x * 255) of TransUNet's [0, 1] images (HU clipped to [-125, 275])",
        ) as w:
            for name in train:
                path = base / "train_npz" / f"{name}.npz"
                if not path.is_file():
                    raise VerificationError(f"{path} is listed in train.txt but missing")
                try:
                    with np.load(path) as z:
                        img, lab = z["image"], z["label"]
                except (OSError, KeyError, ValueError) as exc:
                    raise VerificationError(f"cannot read {path} (keys image, label): {exc}") from exc
                w.add(name, unit_to_uint8(img, path), label_to_uint8(lab, len(CLASSES), path))
                m = _NPZ.match(name)
                volumes.setdefault(m["case"] if m else name, []).append(name)
            for names in volumes.values():
                names.sort(key=lambda n: int(_NPZ.match(n)["i"]) if _NPZ.match(n) else 0)
            test_names = []
            for case in test:
                path = base / "test_vol_h5" / f"{case}.npy.h5"
                try:
                    with h5py.File(path, "r") as f:
                        img, lab = np.asarray(f["image"]), np.asarray(f["label"])
                except (OSError, KeyError) as exc:
                    raise VerificationError(f"cannot read {path} (keys image, label): {exc}") from exc
                names = []
                for i in range(img.shape[0]):
                    name = f"{case}_slice{i:03d}"
                    w.add(name, unit_to_uint8(img[i], path), label_to_uint8(lab[i], len(CLASSES), path))
                    names.append(name)
                volumes[case] = names
                test_names += names
            w.set_splits(
                add_validation({"train": list(train), "test": test_names}, group=lambda n: n.split("_slice")[0])
            )  # 2 of the 18 cases
            cases = {"train_cases": len({n.split("_slice")[0] for n in train}), "test_cases": len(test)}
            warns = check_counts(INFO.name, cases, EXPECTED_CASES, allow_partial)
            if warns:
                w.meta.setdefault("warnings", []).extend(warns)
    return w.root


main = make_main(INFO, prepare)

if __name__ == "__main__":
    sys.exit(main())
