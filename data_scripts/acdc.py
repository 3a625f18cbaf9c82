"""ACDC cardiac cine MRI (Bernard et al., IEEE TMI 2018): short-axis volumes at end-diastole and
end-systole with right ventricle (1), myocardium (2) and left ventricle (3) labels.

Two raw forms are accepted (manual download: the ACDC site asks for registration):

1. the widely used 2D-slice h5 preprocessing (SSL4MIS, used by MCSC)::

       ACDC/data/slices/patientXXX_frameYY_slice_Z.h5   keys image (float 0..1), label (uint8)
       ACDC/data/patientXXX_frameYY.h5                  image, label of shape (slices, H, W)
       ACDC/train_slices.list  ACDC/val.list  ACDC/test.list   (70/10/20 patients)

   Training samples are the slices of ``train_slices.list`` (in list order); validation and test
   samples are the slices of the ``val.list``/``test.list`` volumes, named
   ``patientXXX_frameYY_slice_i`` with ``i`` counted from 0.

2. the original NIfTI release (``training/patientXXX/patientXXX_frameYY.nii.gz`` with
   ``..._gt.nii.gz``): each volume is min-max normalised to [0, 1] (as the h5 form), cut into
   slices (``data[:, :, z].T``, the (H, W) layout of the h5 form), and split into 70/10/20
   patients, either as SSL4MIS's lists (``--lists DIR`` holding ``train_slices.list``/``val.list``/
   ``test.list``) or drawn with ``random.Random(0)`` over the 100 training patients.

Images are stored as uint8 ``round(x * 255)``. ``dataset.json`` gets ``volumes`` (volume name ->
slice names in order), ``spacing`` (mm, (z, y, x); NIfTI only: the h5 form has none, so SSL4MIS
and MCSC evaluate HD95 in pixels) and ``labeled_patients``.

Semi-supervised subsets (MCSC): ``train_labeled_K`` are the slices of the first K patients in
``train_slices.list`` order (K = 1, 3, 7; with the SSL4MIS list 1 -> 32, 3 -> 68 and 7 -> 136 slices,
the counts the SSL4MIS/MCSC code hard-codes as the first N lines of that list), ``train_unlabeled_K``
the other training slices.
:class:`mslib.data.volumes.VolumeDataset` yields whole volumes for per-volume evaluation.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, check_counts, find_dir, read_lines, to_uint8_image
from .volume import label_to_uint8, nifti_stem, unit_to_uint8

CLASSES = ["background", "right ventricle", "myocardium", "left ventricle"]
LABELED = (1, 3, 7)
EXPECTED_H5 = {"train": 1312, "train_labeled_1": 32, "train_labeled_3": 68, "train_labeled_7": 136}
EXPECTED_VOLUMES = {"train_volumes": 140, "val_volumes": 20, "test_volumes": 40}

INFO = DatasetInfo(
    name="acdc",
    title="ACDC cardiac MRI (RV, myocardium, LV)",
    homepage="https://www.creatis.insa-lyon.fr/Challenge/acdc/",
    licence="Research use only; cite Bernard et al. 2018 (the release's MANDATORY_CITATION.md).",
    citation="O. Bernard et al., Deep learning techniques for automatic MRI cardiac multi-structures segmentation "
    "and diagnosis: is the problem solved?, IEEE TMI 37(11), 2514-2525, 2018.",
    used_by="MCSC (1, 3, 7 labelled cases)",
    size="100 training patients, 200 ED/ES volumes (h5 form about 1 GB)",
    files=(RawFile("ACDC.zip"),),
    manual="Either (1) the SSL4MIS preprocessed folder 'ACDC' (data/, data/slices/, *.list; see the SSL4MIS README "
    "for its link), or (2) register on the ACDC site (homepage; the data now live on the Creatis "
    "'humanheart-project' platform), download the NIfTI 'database' and pass it, optionally with "
    "--lists DIR (SSL4MIS list files) for the MCSC split.",
)

_SLICE = re.compile(r"^(?P<vol>patient\d+_frame\d+)_slice_(?P<i>\d+)$")


def patient_of(name: str) -> str:
    return name.split("_frame")[0]


def labeled_subsets(train: Sequence[str], ks: Sequence[int] = LABELED) -> dict[str, list[str]]:
    """``train_labeled_K`` = slices of the first K patients in list order, ``train_unlabeled_K`` the rest."""
    order = _patients_in_order(train)
    out = {}
    for k in ks:
        if k > len(order):
            continue
        first = set(order[:k])
        out[f"train_labeled_{k}"] = [n for n in train if patient_of(n) in first]
        out[f"train_unlabeled_{k}"] = [n for n in train if patient_of(n) not in first]
    return out


def _patients_in_order(names: Sequence[str]) -> list[str]:
    order: list[str] = []
    for n in names:
        if patient_of(n) not in order:
            order.append(patient_of(n))
    return order


def _read_list(path: Path) -> list[str]:
    return read_lines(path)


def _h5(path: Path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "image" not in f or "label" not in f:
                raise VerificationError(f"{path}: h5 file without 'image' and 'label' datasets")
            return np.asarray(f["image"]), np.asarray(f["label"])
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc}; the file is damaged or missing") from exc


def _prepare_h5(base: Path, w) -> dict[str, list[str]]:
    volumes: dict[str, list[str]] = w.meta["volumes"]
    train = _read_list(base / "train_slices.list")
    for name in train:
        img, lab = _h5(base / "data" / "slices" / f"{name}.h5")
        if img.ndim != 2:
            raise VerificationError(f"{name}.h5: slice image has shape {img.shape}, expected (H, W)")
        w.add(name, unit_to_uint8(img, f"{name}.h5"), label_to_uint8(lab, len(CLASSES), f"{name}.h5"))
        m = _SLICE.match(name)
        volumes.setdefault(m["vol"] if m else name, []).append(name)
    for names in volumes.values():
        names.sort(key=lambda n: int(_SLICE.match(n)["i"]) if _SLICE.match(n) else 0)
    splits = {"train": train}
    for split in ("val", "test"):
        splits[split] = []
        for vol in _read_list(base / f"{split}.list"):
            img, lab = _h5(base / "data" / f"{vol}.h5")
            if img.ndim != 3 or img.shape != lab.shape:
                raise VerificationError(f"{vol}.h5: image {img.shape} / label {lab.shape}; expected (S, H, W) each")
            names = []
            for i in range(img.shape[0]):
                name = f"{vol}_slice_{i}"
                w.add(name, unit_to_uint8(img[i], f"{vol}.h5"), label_to_uint8(lab[i], len(CLASSES), f"{vol}.h5"))
                names.append(name)
            volumes[vol] = names
            splits[split].extend(names)
    return splits


def _prepare_nifti(base: Path, w, lists: Path | None, seed: int) -> dict[str, list[str]]:
    volumes: dict[str, list[str]] = w.meta["volumes"]
    spacing: dict[str, list[float]] = w.meta["spacing"]
    frames = sorted(p for p in base.rglob("patient*_frame??.nii.gz"))
    if any("training" in f.parts for f in frames):  # the 100 training patients (testing/ holds 101-150)
        frames = [f for f in frames if "training" in f.parts]
    by_patient: dict[str, list[Path]] = {}
    for f in frames:
        by_patient.setdefault(patient_of(nifti_stem(f)), []).append(f)
    if not by_patient:
        raise VerificationError(f"{base}: no patientXXX_frameYY.nii.gz volumes found")
    if lists is not None:
        part = {
            k: _patients_in_order(_read_list(lists / f))
            for k, f in (("train", "train_slices.list"), ("val", "val.list"), ("test", "test.list"))
        }
        w.meta["split_note"] = f"SSL4MIS lists from {lists.name}"
    else:
        patients = sorted(by_patient)
        random.Random(seed).shuffle(patients)
        n = len(patients)
        n_val, n_test = round(0.1 * n), round(0.2 * n)
        part = {
            "test": sorted(patients[:n_test]),
            "val": sorted(patients[n_test : n_test + n_val]),
            "train": sorted(patients[n_test + n_val :]),
        }
        w.meta["split_note"] = f"70/10/20 patients drawn with random.Random({seed})"
    splits: dict[str, list[str]] = {k: [] for k in part}
    for split, patients in part.items():
        for p in patients:
            if p not in by_patient:
                raise VerificationError(f"{p} is in the {split} list but not in {base}")
            for f in by_patient[p]:
                vol = nifti_stem(f)
                gt = f.with_name(f"{vol}_gt.nii.gz")
                if not gt.is_file():
                    raise VerificationError(f"{f}: the ground truth {gt.name} is missing")
                img, zooms = load_nifti_raw(f)
                lab, _ = load_nifti_raw(gt)
                if img.shape != lab.shape:
                    raise VerificationError(f"{f.name} {img.shape} and {gt.name} {lab.shape} differ in shape")
                img8 = to_uint8_image(img)  # per-volume min-max to [0, 1], then round(x * 255)
                lab8 = label_to_uint8(lab, len(CLASSES), gt)
                names = []
                for z in range(img.shape[2]):
                    name = f"{vol}_slice_{z}"
                    w.add(name, np.ascontiguousarray(img8[:, :, z].T), np.ascontiguousarray(lab8[:, :, z].T))
                    names.append(name)
                volumes[vol], spacing[vol] = names, [zooms[2], zooms[1], zooms[0]]
                splits[split].extend(names)
    return splits


def load_nifti_raw(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """NIfTI data in its stored orientation (as SimpleITK's (Z, Y, X) arrays, transposed)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        return np.asarray(img.dataobj, dtype=np.float32), tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as exc:
        raise VerificationError(f"cannot read NIfTI {path}: {exc}") from exc


def prepare(raw, root=None, *, allow_partial: bool = False, lists: Path | None = None, seed: int = 0) -> Path:
    """Prepare ACDC (h5 slice form or original NIfTI) with the MCSC labelled subsets into ``root``."""
    with open_raw(INFO, raw) as inputs:
        try:
            base = find_dir(
                inputs.dirs,
                lambda d: (d / "train_slices.list").is_file() and (d / "data").is_dir(),
                "ACDC/train_slices.list and ACDC/data/",
            )
            form = "h5"
        except VerificationError:
            base = find_dir(
                inputs.dirs,
                lambda d: (
                    any(d.glob("patient*/patient*_frame??_gt.nii.gz"))
                    or any(d.glob("training/patient*/patient*_frame??_gt.nii.gz"))
                ),
                "ACDC h5 folder (train_slices.list, data/) or NIfTI patient folders "
                "(patientXXX/patientXXX_frameYY_gt.nii.gz)",
            )
            form = "nifti"
        with prepared_writer(
            INFO,
            root,
            CLASSES,
            1,
            inputs,
            EXPECTED_H5 if form == "h5" else {},
            allow_partial,
            raw_form=form,
            volumes={},
            spacing={} if form == "nifti" else None,
            image_scaling="uint8 = round(x * 255) of the per-volume min-max normalised image",
        ) as w:
            splits = _prepare_h5(base, w) if form == "h5" else _prepare_nifti(base, w, lists, seed)
            subsets = labeled_subsets(splits["train"])
            splits.update(subsets)
            w.meta["labeled_patients"] = {
                k: sorted({patient_of(n) for n in subsets[f"train_labeled_{k}"]})
                for k in LABELED
                if f"train_labeled_{k}" in subsets
            }
            w.set_splits({k: v for k, v in splits.items() if v})
            vol_counts = {
                f"{s}_volumes": len({n.rsplit("_slice_", 1)[0] for n in splits.get(s, [])})
                for s in ("train", "val", "test")
            }
            warns = check_counts(INFO.name, vol_counts, EXPECTED_VOLUMES, allow_partial)
            if warns:
                w.meta.setdefault("warnings", []).extend(warns)
    return w.root


def _args(p):
    p.add_argument(
        "--lists",
        type=Path,
        default=None,
        help="folder with SSL4MIS train_slices.list/val.list/test.list (NIfTI form only)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the patient split when no --lists is given")


main = make_main(INFO, prepare, _args)

if __name__ == "__main__":
    sys.exit(main())
