"""COVID-19 lung infection CT, as M2SNet Sec. IV-A combines it: the 20 CT volumes of Zenodo
record 3757476 (Ma et al.) sliced to 2D, plus, when given, the 100 axial slices of the MedSeg
COVID-19 CT segmentation set ([52] in M2SNet).

Raw: ``COVID-19-CT-Seg_20cases.zip`` (CT) and ``Infection_Mask.zip`` from Zenodo (downloadable;
Zenodo shows md5 checksums on the record page, which we have not copied: ``None`` is stored and
the sha256 of what the user got is recorded). CT files are named ``coronacases_org_001.nii.gz``
and ``radiopaedia_org_covid-19-pneumonia-10_85902_1-dcm.nii.gz``; their masks
``coronacases_001.nii.gz`` and ``radiopaedia_10_85902_1.nii.gz``. Optional MedSeg files
``tr_im.nii.gz`` / ``tr_mask.nii.gz`` (manual; labels 1 ground glass, 2 consolidation,
3 pleural effusion: 1 and 2 are infection, 3 becomes background, reported).

Conversion (documented in :mod:`data_scripts.volume`): canonical orientation, axial slices,
lung window (level -600, width 1500 HU); Radiopaedia volumes are already 8-bit (reported).
"Uniform sampling" (M2SNet: 1277 images): every ``step``-th slice of each Zenodo volume (default
3: about 1174 slices, plus the 100 MedSeg slices, close to the paper's 1277), all MedSeg slices.

Splits: by case (no patient in both), ``random.Random(0)`` over the sorted cases, 70% of the
cases for ``train`` and 30% for ``test`` (the paper's 894/383 is 70/30 of the images; its list
is not published); ``val`` = 10% of the training cases (at least one) held out, ``train``
the other training cases, ``train_full`` all of them; ``all``. ``dataset.json`` lists the ``volumes`` and
their ``spacing``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from .common import DatasetInfo, RawFile, make_main, open_raw, prepared_writer
from .prepare import VerificationError, add_validation, check_counts, seeded_split
from .volume import LUNG_WINDOW, axial_slices, ct_to_uint8, load_nifti, nifti_stem

ZENODO = "https://zenodo.org/records/3757476/files/"
N_CASES = 20

INFO = DatasetInfo(
    name="covid19-ct",
    title="COVID-19 CT lung infection (Zenodo 3757476 + MedSeg)",
    homepage="https://zenodo.org/records/3757476",
    licence="Zenodo 3757476: CC BY-NC-SA 4.0 (cite Ma et al. 2021); MedSeg: see medicalsegmentation.com/covid19.",
    citation="J. Ma et al., Toward data-efficient learning: a benchmark for COVID-19 CT lung and infection "
    "segmentation, Medical Physics 48(3), 2021; MedSeg COVID-19 CT segmentation dataset, 2020.",
    used_by="M2SNet Table III",
    size="20 CT volumes (about 1.1 GB) + optional MedSeg (100 slices)",
    files=(
        RawFile("COVID-19-CT-Seg_20cases.zip", (ZENODO + "COVID-19-CT-Seg_20cases.zip?download=1",)),
        RawFile("Infection_Mask.zip", (ZENODO + "Infection_Mask.zip?download=1",)),
    ),
)


def case_key(stem: str) -> str:
    """CT and mask file stems -> one case key (``coronacases_001``, ``radiopaedia_10_85902_1``)."""
    s = stem.replace("_org_", "_").replace("covid-19-pneumonia-", "")
    s = re.sub(r"-dcm$", "", s)
    return s


def _nifti_files(dirs) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.nii*") if not p.name.startswith("."))


def prepare(raw, root=None, *, allow_partial: bool = False, step: int = 3, seed: int = 0) -> Path:
    """Prepare the Zenodo (and optional MedSeg) COVID-19 CT sets as 2D slices into ``root``."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    with open_raw(INFO, raw) as inputs:
        files = _nifti_files(inputs.dirs) + [f for f in inputs.files if f.name.endswith((".nii", ".nii.gz"))]
        medseg = {nifti_stem(f): f for f in files if nifti_stem(f) in ("tr_im", "tr_mask")}
        cts = {case_key(nifti_stem(f)): f for f in files if "_org_" in f.name}
        masks: dict[str, Path] = {}
        for f in files:
            if "_org_" in f.name or nifti_stem(f) in medseg or {"Lung_Mask", "Lung_and_Infection_Mask"} & set(f.parts):
                continue
            key = case_key(nifti_stem(f))
            if key in masks:
                raise VerificationError(f"two infection masks for case {key}: {masks[key]} and {f}")
            masks[key] = f
        if not cts:
            raise VerificationError(
                "no Zenodo CT volumes (*_org_*.nii.gz) found in --raw; pass "
                "COVID-19-CT-Seg_20cases.zip and Infection_Mask.zip"
            )
        missing = sorted(set(cts) - set(masks))
        if missing:
            raise VerificationError(f"CT volumes without an infection mask: {missing[:5]} (pass Infection_Mask.zip)")
        volumes: dict[str, list[str]] = {}
        spacing: dict[str, list[float]] = {}
        with prepared_writer(
            INFO,
            root,
            ["background", "infection"],
            1,
            inputs,
            {},
            allow_partial,
            window={"level": LUNG_WINDOW[0], "width": LUNG_WINDOW[1], "units": "HU"},
            sampling_step=step,
            volumes=volumes,
            spacing=spacing,
            split_note=f"70/30 of the cases, random.Random({seed})",
        ) as w:
            warns = check_counts(INFO.name, {"cases": len(cts)}, {"cases": N_CASES}, allow_partial)
            cases = {}
            for key in sorted(cts):
                ct, zooms = load_nifti(cts[key])
                lab, _ = load_nifti(masks[key])
                if ct.shape != lab.shape:
                    raise VerificationError(
                        f"{cts[key].name} {ct.shape} and {masks[key].name} {lab.shape} differ in shape"
                    )
                img8 = ct_to_uint8(ct, lambda what, k=key: w.report_repair(k, what))
                if not set(np.unique(lab).tolist()) <= {0.0, 1.0}:
                    w.report_repair(key, "infection mask values other than 0/1: > 0.5 taken as infection")
                lab8 = (lab > 0.5).astype(np.uint8)
                ims, labs = axial_slices(img8), axial_slices(lab8)
                names = []
                for z in range(0, len(ims), step):
                    name = f"{key}_z{z:03d}"
                    w.add(name, ims[z], labs[z])
                    names.append(name)
                volumes[key], spacing[key] = names, [zooms[2], zooms[1], zooms[0]]
                cases[key] = names
            if medseg:
                if set(medseg) != {"tr_im", "tr_mask"}:
                    raise VerificationError("MedSeg needs both tr_im.nii.gz and tr_mask.nii.gz")
                ct, zooms = load_nifti(medseg["tr_im"])
                lab, _ = load_nifti(medseg["tr_mask"])
                img8 = ct_to_uint8(ct, lambda what: w.report_repair("medseg", what))
                lab = np.rint(lab).astype(np.int64)
                if (lab == 3).any():
                    w.report_repair(
                        "medseg",
                        "MedSeg label 3 (pleural effusion) mapped to background; 1 and 2 "
                        "(ground glass, consolidation) merged into infection",
                    )
                lab8 = np.isin(lab, (1, 2)).astype(np.uint8)
                names = []
                for z, (im, lb) in enumerate(zip(axial_slices(img8), axial_slices(lab8))):
                    w.add(f"medseg_z{z:03d}", im, lb)
                    names.append(f"medseg_z{z:03d}")
                volumes["medseg"], spacing["medseg"] = names, [zooms[2], zooms[1], zooms[0]]
                cases["medseg"] = names
            parts = seeded_split(sorted(cases), {"test": max(1, round(0.3 * len(cases))), "train": 0}, seed=seed)
            parts = add_validation(parts, seed=seed)  # whole cases held out as val
            w.set_splits({"all": list(w.names), **{k: [n for c in v for n in cases[c]] for k, v in parts.items()}})
            w.meta["cases"] = {k: sorted(v) for k, v in parts.items()}
            if warns:
                w.meta.setdefault("warnings", []).extend(warns)
    return w.root


def _args(p):
    p.add_argument("--step", type=int, default=3, help="keep every STEP-th axial slice of each Zenodo volume")
    p.add_argument("--seed", type=int, default=0, help="seed of the case split")


main = make_main(INFO, prepare, _args)

if __name__ == "__main__":
    sys.exit(main())
