"""Labelled subsets for semi-supervised training: the slices of the first K cases, in list order.

MCSC and SSL4MIS label "K cases" of ACDC by taking the first N lines of ``train_slices.list``
(N hard-coded per K: 1 -> 32, 3 -> 68, 7 -> 136 slices). That equals the slices of the first K
patients in list order, which is what :func:`labelled_split` computes from slice names (it
does not need the hard-coded counts, and works on any volumetric dataset, synthetic included).
MCSC's own script maps 1 case to 23 slices (SSL4MIS: 32), i.e. part of the first patient, most
likely a typo; mslib follows the patient definition (32 slices on the SSL4MIS list).
A case is a patient: ``patient099_frame01_slice_15`` and ``patient099_frame02_slice_3`` are both
case ``patient099`` (its two cardiac phases); ``case003_slice_4`` is case ``case003``.

``python -m data_scripts.acdc`` already writes the splits ``train_labeled_K`` and
``train_unlabeled_K``; :func:`read_labelled_split` reads them (or computes them from ``train``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from .layout import read_split

__all__ = ["SSL4MIS_ACDC_SLICES", "case_of", "labelled_split", "read_slice_list", "read_labelled_split"]

#: Slices SSL4MIS/MCSC label for K ACDC cases (the first N lines of train_slices.list).
SSL4MIS_ACDC_SLICES = {1: 32, 3: 68, 7: 136, 14: 256, 21: 396, 28: 512, 35: 664, 70: 1312}

_SLICE = re.compile(r"^(?P<case>.+?)(?:_frame\d+)?_slice_\d+$")


def case_of(name: str) -> str:
    """The case (patient) a slice name belongs to: the name without ``_frameYY`` and ``_slice_Z``."""
    m = _SLICE.match(name)
    return m["case"] if m else name


def labelled_split(names: Sequence[str], cases: int) -> tuple[list[str], list[str]]:
    """``(labelled, unlabelled)``: the slices of the first ``cases`` cases in list order, and the rest."""
    order: list[str] = []
    for n in names:
        c = case_of(n)
        if c not in order:
            order.append(c)
    if not 1 <= cases <= len(order):
        raise ValueError(f"cases must be between 1 and {len(order)} (the cases in the list), got {cases}")
    first = set(order[:cases])
    return [n for n in names if case_of(n) in first], [n for n in names if case_of(n) not in first]


def read_slice_list(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a slice list (``train_slices.list``), without extensions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"slice list {path} not found; pass the ACDC folder's train_slices.list")
    return [ln.strip().split(".")[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_labelled_split(root: str | os.PathLike, cases: int) -> tuple[list[str], list[str]]:
    """``(labelled, unlabelled)`` slice names of a prepared dataset for ``cases`` labelled cases.

    Uses the prepared splits ``train_labeled_K``/``train_unlabeled_K`` when present (written by
    ``data_scripts.acdc``), otherwise :func:`labelled_split` of the ``train`` split.
    """
    root = Path(root)
    if (root / "splits" / f"train_labeled_{cases}.txt").is_file():
        return read_split(root, f"train_labeled_{cases}"), read_split(root, f"train_unlabeled_{cases}")
    return labelled_split(read_split(root, "train"), cases)
