"""Volumetric sources: ACDC (h5 slices and NIfTI), Synapse (npz/h5), COVID-19 CT and lung CT
(NIfTI), the MCSC labelled subsets, and ``VolumeDataset`` for per-volume evaluation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from data_scripts import acdc, covid19_ct, lung_ct, synapse
from data_scripts.prepare import VerificationError
from data_scripts.volume import axial_slices, ct_to_uint8, unit_to_uint8
from mslib.data.folder import DatasetError
from mslib.data.volumes import VolumeDataset
from tests.fixtures_data import acdc_h5_tree, acdc_nifti_tree, covid_tree, lung_tree, pack, synapse_tree, write_nifti


def meta(root):
    return json.loads((root / "dataset.json").read_text())


def split(root, s):
    return (root / "splits" / f"{s}.txt").read_text().split()


def png(root, kind, name):
    return np.asarray(Image.open(root / kind / f"{name}.png"))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def acdc_root(tmp_path):
    truth = acdc_h5_tree(tmp_path / "src")
    return acdc.prepare(
        pack(tmp_path / "src", tmp_path / "ACDC.tar.gz", "tar"), tmp_path / "acdc", allow_partial=True
    ), truth


def test_acdc_h5_slices_values_and_lists(acdc_root):
    root, truth = acdc_root
    img, lab = truth["patient005_frame01_slice_1"]
    np.testing.assert_array_equal(
        png(root, "images", "patient005_frame01_slice_1"), np.rint(img * 255).astype(np.uint8)
    )
    np.testing.assert_array_equal(png(root, "masks", "patient005_frame01_slice_1"), lab)
    vimg, vlab = truth["patient004_frame02"]
    np.testing.assert_array_equal(png(root, "masks", "patient004_frame02_slice_2"), vlab[2])
    train = split(root, "train")
    assert train[:3] == ["patient005_frame01_slice_0", "patient005_frame01_slice_1", "patient005_frame01_slice_2"]
    assert split(root, "val") == [f"patient003_frame0{f}_slice_{s}" for f in (1, 2) for s in range(3)]
    m = meta(root)
    assert m["classes"] == ["background", "right ventricle", "myocardium", "left ventricle"] and m["channels"] == 1
    assert m["volumes"]["patient009_frame02"] == [f"patient009_frame02_slice_{s}" for s in range(3)]
    assert m["spacing"] is None


def test_acdc_labelled_subsets_follow_list_order(acdc_root):
    root, _ = acdc_root
    lab1, unl1 = split(root, "train_labeled_1"), split(root, "train_unlabeled_1")
    assert {n.split("_frame")[0] for n in lab1} == {"patient005"} and len(lab1) == 6  # first in the list, not lowest id
    assert sorted(lab1 + unl1) == sorted(split(root, "train"))
    assert len(split(root, "train_labeled_3")) == 18
    assert not (root / "splits" / "train_labeled_7.txt").exists()  # only 3 patients in the fixture
    assert meta(root)["labeled_patients"]["3"] == ["patient002", "patient005", "patient009"]
    assert acdc.labeled_subsets(
        ["patient007_frame01_slice_0", "patient001_frame01_slice_0", "patient007_frame02_slice_0"], ks=(1,)
    )["train_labeled_1"] == ["patient007_frame01_slice_0", "patient007_frame02_slice_0"]


def test_volume_dataset_yields_whole_volumes(acdc_root):
    root, truth = acdc_root
    ds = VolumeDataset(root, "test")
    assert ds.names == ["patient004_frame01", "patient004_frame02"]
    image, label, name = ds[1]
    assert image.shape == (3, 1, 6, 7) and image.dtype == torch.float32 and label.dtype == torch.int64
    img, lab = truth[name]
    torch.testing.assert_close(image[:, 0], torch.from_numpy(np.rint(img * 255) / 255).float())
    assert torch.equal(label, torch.from_numpy(lab).long())
    assert len(VolumeDataset(root, "train")) == 6


def test_volume_dataset_rejects_partial_volumes(acdc_root, tmp_path):
    root, _ = acdc_root
    (root / "splits" / "half.txt").write_text("patient004_frame01_slice_0\n")
    with pytest.raises(DatasetError, match="only 1 of its 3 slices"):
        VolumeDataset(root, "half")
    m = meta(root)
    del m["volumes"]
    (root / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="no 'volumes'"):
        VolumeDataset(root, "test")


def test_acdc_h5_out_of_range_image_is_refused(tmp_path):
    acdc_h5_tree(tmp_path / "src")
    from tests.fixtures_data import write_h5

    write_h5(
        tmp_path / "src" / "ACDC" / "data" / "patient003_frame01.h5", np.full((3, 6, 7), 300.0), np.zeros((3, 6, 7))
    )
    with pytest.raises(VerificationError, match="patient003_frame01.h5: image values .* not in \\[0, 1\\]"):
        acdc.prepare(tmp_path / "src", tmp_path / "acdc", allow_partial=True)
    assert not (tmp_path / "acdc").exists()


def test_acdc_nifti_release_split_and_spacing(tmp_path):
    acdc_nifti_tree(tmp_path / "src", patients=10)
    root = acdc.prepare(tmp_path / "src", tmp_path / "acdc", allow_partial=True)
    m = meta(root)
    patients = {s: {n.split("_frame")[0] for n in split(root, s)} for s in ("train", "val", "test")}
    assert [len(patients[s]) for s in ("train", "val", "test")] == [7, 1, 2]
    assert not (patients["train"] & patients["test"]) and "patient101" not in set().union(*patients.values())
    assert m["spacing"]["patient001_frame01"] == [5.0, 1.5, 1.5]
    # min-max normalisation per volume, then (H, W) = data[:, :, z].T
    import nibabel as nib

    data = np.asarray(
        nib.load(str(tmp_path / "src/database/training/patient001/patient001_frame12.nii.gz")).dataobj, dtype=float
    )
    expect = np.rint((data - data.min()) / (data.max() - data.min()) * 255)[:, :, 1].T
    np.testing.assert_array_equal(png(root, "images", "patient001_frame12_slice_1"), expect)
    # SSL4MIS lists, when given, decide the split
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train_slices.list").write_text("patient003_frame01_slice_0\npatient001_frame01_slice_0\n")
    (lists / "val.list").write_text("patient002_frame01\n")
    (lists / "test.list").write_text("patient004_frame01\n")
    root2 = acdc.prepare(tmp_path / "src", tmp_path / "acdc2", allow_partial=True, lists=lists)
    assert split(root2, "train")[0].startswith("patient003_frame01_slice_0")
    assert meta(root2)["labeled_patients"]["1"] == ["patient003"]


def test_synapse_npz_and_test_volumes(tmp_path):
    synapse_tree(tmp_path / "src")
    root = synapse.prepare(tmp_path / "src", tmp_path / "syn", allow_partial=True)
    assert split(root, "train_full") == [
        "case0005_slice000",
        "case0005_slice001",
        "case0006_slice000",
        "case0006_slice001",
    ]
    train, val = split(root, "train"), split(root, "val")  # one whole case held out
    assert len(train) == len(val) == 2 and {n[:8] for n in train} != {n[:8] for n in val}
    assert len({n[:8] for n in val}) == 1 and len(VolumeDataset(root, "val")) == 1
    with np.load(tmp_path / "src/Synapse/train_npz/case0006_slice001.npz") as z:
        np.testing.assert_array_equal(png(root, "masks", "case0006_slice001"), z["label"].astype(np.uint8))
        np.testing.assert_array_equal(png(root, "images", "case0006_slice001"), np.rint(z["image"] * 255))
    assert len(meta(root)["classes"]) == 9
    ds = VolumeDataset(root, "test")
    assert ds.names == ["case0001"] and ds[0][0].shape == (2, 1, 6, 6)


def test_covid_zenodo_naming_windowing_and_case_split(tmp_path, capsys):
    covid_tree(tmp_path / "src")
    ct_zip = pack(tmp_path / "src" / "COVID-19-CT-Seg_20cases", tmp_path / "COVID-19-CT-Seg_20cases.zip")  # flat
    (tmp_path / "imsrc").mkdir()
    (tmp_path / "src" / "Infection_Mask").rename(tmp_path / "imsrc" / "Infection_Mask")
    mask_zip = pack(tmp_path / "imsrc", tmp_path / "Infection_Mask.zip")  # holds the folder Infection_Mask/
    zips = [ct_zip, mask_zip]
    root = covid19_ct.prepare(zips + [tmp_path / "src" / "medseg"], tmp_path / "cov", allow_partial=True, step=2)
    out = capsys.readouterr().out
    assert "cases: 3 (expected 20)" in out
    m = meta(root)
    assert m["volumes"]["coronacases_001"] == ["coronacases_001_z000", "coronacases_001_z002", "coronacases_001_z004"]
    assert len(m["volumes"]["medseg"]) == 2  # MedSeg slices are all kept
    # lung window on HU data, checked on one slice against a direct computation
    from data_scripts.volume import load_nifti

    ct, _ = load_nifti(tmp_path / "src/COVID-19-CT-Seg_20cases/coronacases_org_001.nii.gz")
    z = ct[::-1, ::-1, 2].T
    expect = np.clip(np.rint((z + 1350.0) / 1500.0 * 255), 0, 255)
    np.testing.assert_array_equal(png(root, "images", "coronacases_001_z002"), expect)
    reps = {(r["name"], r["repair"].split(" (")[0]) for r in m["repairs"]}
    assert ("radiopaedia_10_85902_1", "volume not in Hounsfield units") in reps
    assert any(r["name"] == "medseg" and "pleural effusion" in r["repair"] for r in m["repairs"])
    cases = m["cases"]
    assert sorted(cases["train_full"] + cases["test"]) == sorted(m["volumes"])
    assert not set(cases["train_full"]) & set(cases["test"])
    assert sorted(cases["train"] + cases["val"]) == sorted(cases["train_full"]) and len(cases["val"]) == 1
    assert set(split(root, "val")) == {n for c in cases["val"] for n in m["volumes"][c]}
    assert set(split(root, "test")) == {n for c in cases["test"] for n in m["volumes"][c]}


def test_covid_mask_missing_is_an_error(tmp_path):
    covid_tree(tmp_path / "src", medseg=False)
    (tmp_path / "src/Infection_Mask/coronacases_002.nii.gz").unlink()
    with pytest.raises(VerificationError, match="coronacases_002"):
        covid19_ct.prepare(tmp_path / "src", tmp_path / "cov", allow_partial=True)


def test_lung_ct_first_slices(tmp_path):
    lung_tree(tmp_path / "src")
    root = lung_ct.prepare(tmp_path / "src", tmp_path / "lung", allow_partial=True, first=5)
    names = split(root, "test")
    assert names == ["IMG_0002_z000", "IMG_0002_z001", "IMG_0002_z002", "IMG_0003_z000", "IMG_0003_z001"]
    assert set(np.unique(png(root, "masks", "IMG_0003_z001")).tolist()) <= {0, 1}
    root = lung_ct.prepare(tmp_path / "src", tmp_path / "lung7", first=7)  # exactly 7 slices: no warning needed
    assert meta(root)["partial"] is False


def test_volume_helpers():
    data = np.arange(24, dtype=float).reshape(2, 3, 4)  # (X, Y, Z)
    s = axial_slices(data)
    assert len(s) == 4 and s[0].shape == (3, 2)
    assert s[1][0, 0] == data[1, 2, 1] and s[1][2, 1] == data[0, 0, 1]  # anterior top, patient right on the left
    notes = []
    assert ct_to_uint8(np.array([[-1350.0, 150.0, -600.0]]), notes.append).tolist() == [[0, 255, 128]]
    assert notes == []
    assert ct_to_uint8(np.array([[0.0, 200.0]]), notes.append).tolist() == [[0, 200]] and len(notes) == 1
    assert unit_to_uint8(np.array([0.0, 0.5, 1.0, 0.002])).tolist() == [0, 128, 255, 1]


def test_broken_nifti_names_the_file(tmp_path):
    lung_tree(tmp_path / "src", shapes=((4, 4, 2),))
    (tmp_path / "src/3d_images/MASK_0002.nii.gz").write_bytes(b"garbage")
    with pytest.raises(VerificationError, match="MASK_0002.nii.gz"):
        lung_ct.prepare(tmp_path / "src", tmp_path / "lung", allow_partial=True, first=2)
    write_nifti(tmp_path / "src/3d_images/MASK_0002.nii.gz", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(VerificationError, match="differ in shape"):
        lung_ct.prepare(tmp_path / "src", tmp_path / "lung", allow_partial=True, first=2)
