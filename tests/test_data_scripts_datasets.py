"""Every preparer on tiny raw layouts built here (zip and tar archives with the real naming and
quirks), checked pixel by pixel against the masks we wrote, plus splits, repairs and metadata."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from data_scripts import (
    busi,
    cvc_clinicdb,
    digestpath,
    goals,
    isic2016,
    isic2016_ph2,
    isic2017,
    kvasir_seg,
    montgomery,
    ph2,
    polyp_benchmark,
)
from data_scripts.prepare import VerificationError
from mslib.data import SegmentationFolder, load_dataset
from tests.fixtures_data import (
    busi_tree,
    clinicdb_tree,
    digestpath_tree,
    goals_tree,
    isic_tree,
    kvasir_tree,
    leftovers,
    montgomery_tree,
    pack,
    ph2_tree,
    pranet_tree,
)


def meta(root):
    return json.loads((root / "dataset.json").read_text())


def mask(root, name):
    return np.asarray(Image.open(root / "masks" / f"{name}.png"))


def split(root, s):
    return (root / "splits" / f"{s}.txt").read_text().split()


def repairs(root):
    return {(r["name"], r["repair"]) for r in meta(root)["repairs"]}


def assert_train_val_test(root, every=None):
    """The contract every chapter and the CLI rely on: ``train``, ``val`` and ``test`` exist and are
    disjoint; ``val`` is held out of the paper's ``train_full`` when the preparer made one."""
    tr, va, te = (set(split(root, s)) for s in ("train", "val", "test"))
    assert tr and va and te and not (tr & va) and not (tr & te) and not (va & te)
    if (root / "splits" / "train_full.txt").exists():
        assert split(root, "train_full") == [n for n in split(root, "train_full") if n in tr | va]
        assert set(split(root, "train_full")) == tr | va
    if every is not None:
        assert tr | va | te == every


def folder(root, s):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SegmentationFolder(root, s)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_kvasir_seg_from_archive(tmp_path, kind, capsys):
    truth = kvasir_tree(tmp_path / "src", n=5)
    archive = pack(tmp_path / "src", tmp_path / ("kvasir-seg.zip" if kind == "zip" else "kvasir-seg.tar.gz"), kind)
    root = kvasir_seg.prepare(archive, tmp_path / "kv", allow_partial=True)
    out = capsys.readouterr().out
    assert "WARNING (--allow-partial)" in out and "JPEG mask thresholded at 128" in out
    for name, m in truth.items():
        np.testing.assert_array_equal(mask(root, name), m)
    m = meta(root)
    assert m["checksum"][archive.name]["sha256"] and m["partial"] is True
    assert m["licence"].startswith("Research") and m["source"].startswith("https://datasets.simula.no")
    assert_train_val_test(root, set(truth))
    assert ("cju0000abc", "JPEG mask thresholded at 128") in repairs(root)
    assert leftovers(tmp_path) == []
    ds = folder(root, "train")
    assert ds.num_classes == 2 and len(ds) == len(split(root, "train"))


def test_full_counts_are_enforced_without_allow_partial(tmp_path):
    kvasir_tree(tmp_path / "src", n=3)
    with pytest.raises(VerificationError, match="total: 3 \\(expected 1000\\).*--allow-partial"):
        kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv")
    assert not (tmp_path / "kv").exists() and leftovers(tmp_path) == []


def test_rerun_is_idempotent(tmp_path):
    kvasir_tree(tmp_path / "src", n=4)
    r1 = kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    snap = {p.relative_to(r1).as_posix(): p.read_bytes() for p in r1.rglob("*") if p.is_file()}
    r2 = kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    assert {p.relative_to(r2).as_posix(): p.read_bytes() for p in r2.rglob("*") if p.is_file()} == snap


def test_unpaired_or_corrupt_raw_files_fail_by_name(tmp_path):
    kvasir_tree(tmp_path / "src", n=3)
    (tmp_path / "src" / "Kvasir-SEG" / "masks" / "cju0001abc.jpg").unlink()
    with pytest.raises(VerificationError, match="cju0001abc.jpg"):
        kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    kvasir_tree(tmp_path / "src2", n=3)
    (tmp_path / "src2" / "Kvasir-SEG" / "masks" / "cju0001abc.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VerificationError, match="cannot read mask .*cju0001abc.jpg"):
        kvasir_seg.prepare(tmp_path / "src2", tmp_path / "kv", allow_partial=True)
    assert not (tmp_path / "kv").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_busi_multi_masks_names_and_folds(tmp_path, kind):
    truth = busi_tree(tmp_path / "src")
    archive = pack(tmp_path / "src", tmp_path / ("Dataset_BUSI.zip" if kind == "zip" else "busi.tar.gz"), kind)
    root = busi.prepare(archive, tmp_path / "busi", allow_partial=True)
    for name, m in truth.items():
        np.testing.assert_array_equal(mask(root, name), m)
    assert mask(root, "normal_1").max() == 0
    rep = repairs(root)
    assert ("benign_2", "2 masks merged by union") in rep and ("malignant_2", "2 masks merged by union") in rep
    assert ("normal_1", "RGB mask reduced to one channel") in rep
    m = meta(root)
    assert m["original_names"]["benign_2"] == "benign/benign (2).png"
    folds = [split(root, f"fold{i}") for i in range(4)]
    assert sorted(n for f in folds for n in f) == sorted(truth)  # disjoint and covering
    for i, f in enumerate(folds):
        assert sorted(split(root, f"fold{i}_train") + f) == sorted(truth)
        assert {n.split("_")[0] for n in f} == {"benign", "malignant", "normal"}  # stratified: 4 per class / 4 folds
    assert split(root, "test") == folds[0] and sorted(split(root, "train") + split(root, "val")) == split(
        root, "fold0_train"
    )
    assert_train_val_test(root, set(truth))
    # deterministic: same folds again
    root2 = busi.prepare(tmp_path / "src", tmp_path / "busi2", allow_partial=True)
    assert [split(root2, f"fold{i}") for i in range(4)] == folds


def test_busi_orphan_mask_is_an_error(tmp_path):
    busi_tree(tmp_path / "src")
    (tmp_path / "src" / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png").unlink()
    with pytest.raises(VerificationError, match="benign \\(1\\)"):
        busi.prepare(tmp_path / "src", tmp_path / "busi", allow_partial=True)


def test_ph2_bmp_1bit_and_rgb_masks(tmp_path):
    truth = ph2_tree(tmp_path / "src")
    root = ph2.prepare(pack(tmp_path / "src", tmp_path / "ph2.zip"), tmp_path / "ph2", allow_partial=True)
    for name, m in truth.items():
        np.testing.assert_array_equal(mask(root, name), m)
    assert Image.open(root / "images" / "IMD003.png").size == (11, 9)  # sizes vary, kept
    assert repairs(root) == {("IMD003", "RGB mask reduced to one channel")}
    assert split(root, "test") == sorted(truth)


def test_ph2_missing_lesion_file(tmp_path):
    ph2_tree(tmp_path / "src")
    (tmp_path / "src" / "PH2Dataset" / "PH2 Dataset images" / "IMD002" / "IMD002_lesion" / "IMD002_lesion.bmp").unlink()
    with pytest.raises(VerificationError, match="IMD002_lesion.bmp is missing"):
        ph2.prepare(tmp_path / "src", tmp_path / "ph2", allow_partial=True)


def test_isic2016_official_split_from_four_zips(tmp_path):
    lists = isic_tree(tmp_path / "src", isic2016.PARTS, n=3)
    zips = []
    for pair in isic2016.PARTS.values():
        for d in pair:  # each official zip holds its own top folder
            (tmp_path / "one" / d).mkdir(parents=True)
            (tmp_path / "src" / d).rename(tmp_path / "one" / d / d)
            zips.append(pack(tmp_path / "one" / d, tmp_path / f"{d}.zip"))
    root = isic2016.prepare(zips, tmp_path / "isic", allow_partial=True)
    assert split(root, "train_full") == lists["train"] and split(root, "test") == lists["test"]
    assert_train_val_test(root, set(lists["train"] + lists["test"]))
    np.testing.assert_array_equal(
        mask(root, "ISIC_0000004"),
        np.asarray(
            Image.open(
                tmp_path
                / "one"
                / "ISBI2016_ISIC_Part1_Test_GroundTruth"
                / "ISBI2016_ISIC_Part1_Test_GroundTruth"
                / "ISIC_0000004_Segmentation.png"
            )
        )
        // 255,
    )
    assert sorted(meta(root)["checksum"]) == sorted(z.name for z in zips)


def test_isic2017_ignores_superpixels(tmp_path):
    lists = isic_tree(tmp_path / "src", isic2017.PARTS, n=2, suffix="_segmentation", superpixels=True)
    root = isic2017.prepare(tmp_path / "src", tmp_path / "isic17", allow_partial=True)
    assert {s: split(root, s) for s in ("train", "val", "test")} == lists
    assert not any("superpixels" in p.name for p in (root / "images").iterdir())


def test_isic2016_ph2_combination(tmp_path):
    isic_tree(tmp_path / "isic", {"train": isic2016.PARTS["train"]}, n=3)
    ph2_tree(tmp_path / "ph2")
    root = isic2016_ph2.prepare([tmp_path / "isic", tmp_path / "ph2"], tmp_path / "comb", allow_partial=True)
    assert split(root, "train_full") == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert split(root, "test") == ["IMD002", "IMD003", "IMD004"]
    assert_train_val_test(root)


def test_cvc_clinicdb_tif(tmp_path):
    clinicdb_tree(tmp_path / "src", n=5)
    root = cvc_clinicdb.prepare(
        pack(tmp_path / "src", tmp_path / "c.tar.gz", "tar"), tmp_path / "c", allow_partial=True
    )
    assert sorted(split(root, "all")) == ["1", "2", "3", "4", "5"]
    assert len(split(root, "test")) == 1 and len(split(root, "train_full")) == 4
    assert len(split(root, "val")) == 1 and len(split(root, "train")) == 3
    assert_train_val_test(root, {"1", "2", "3", "4", "5"})
    assert mask(root, "3").sum() == 16


def test_polyp_benchmark_subsets_and_names(tmp_path):
    pranet_tree(tmp_path / "src")
    root = polyp_benchmark.prepare(tmp_path / "src", tmp_path / "pb", allow_partial=True)
    assert split(root, "train_full") == ["train__0", "train__1", "train__2"]
    assert_train_val_test(root)
    assert split(root, "test_CVC-300") == ["CVC-300__0", "CVC-300__1"]
    assert len(split(root, "test")) == 10
    assert ("ETIS-LaribPolypDB__0", "JPEG mask thresholded at 128") in repairs(root)
    assert mask(root, "Kvasir__1")[0, 0] == 0 and mask(root, "Kvasir__1").sum() == 16


def test_montgomery_merges_lungs_grayscale(tmp_path):
    montgomery_tree(tmp_path / "src")
    root = montgomery.prepare(
        pack(tmp_path / "src", tmp_path / "NLM-MontgomeryCXRSet.zip"), tmp_path / "mc", allow_partial=True
    )
    m = mask(root, "MCUCXR_0001_0")
    assert m[1:6, 1:4].all() and m[1:6, 6:9].all() and m.sum() == 30
    assert Image.open(root / "images" / "MCUCXR_0001_0.png").mode == "L" and meta(root)["channels"] == 1
    assert ("MCUCXR_0001_0", "2 masks merged by union") in repairs(root)
    assert len(split(root, "train_full")) + len(split(root, "test")) == 4
    assert_train_val_test(root, set(split(root, "all")))


def test_goals_layer_codes(tmp_path):
    goals_tree(tmp_path / "src")
    root = goals.prepare(tmp_path / "src", tmp_path / "g", allow_partial=True)
    m = mask(root, "0001")
    assert (m[1] == 1).all() and (m[2] == 2).all() and (m[4] == 3).all() and (m[0] == 0).all()
    assert meta(root)["classes"] == ["background", "RNFL", "GCIPL", "choroid"]
    goals_tree(tmp_path / "bad", bad_value=True)
    with pytest.raises(VerificationError, match="\\[200\\] are not GOALS layer codes"):
        goals.prepare(tmp_path / "bad", tmp_path / "g2", allow_partial=True)
    assert not (tmp_path / "g2").exists()


def test_digestpath_pos_neg_and_folds(tmp_path):
    digestpath_tree(tmp_path / "src")
    root = digestpath.prepare(tmp_path / "src", tmp_path / "dp", allow_partial=True)
    assert len(split(root, "pos")) == 5 and len(split(root, "neg")) == 5
    assert all(mask(root, n).max() == 0 for n in split(root, "neg"))
    assert all(mask(root, n).sum() == 16 for n in split(root, "pos"))
    assert "neg_0" in split(root, "neg") and " " not in "".join(split(root, "all"))
    folds = [split(root, f"fold{i}") for i in range(5)]
    assert sorted(n for f in folds for n in f) == sorted(split(root, "all"))
    assert split(root, "test") == folds[0]
    assert_train_val_test(root, set(split(root, "all")))


def test_prepared_dataset_loads_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "data"))
    kvasir_tree(tmp_path / "src", n=4)
    assert kvasir_seg.main(["--raw", str(tmp_path / "src"), "--allow-partial"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset("kvasir-seg", "all")
    image, m = ds[0]
    assert image.shape[0] == 3 and m.max() <= 1 and len(ds) == 4


ALL = [
    "kvasir_seg",
    "cvc_clinicdb",
    "polyp_benchmark",
    "busi",
    "covid19_ct",
    "goals",
    "ph2",
    "isic2016",
    "isic2017",
    "isic2016_ph2",
    "montgomery",
    "lung_ct",
    "digestpath",
    "acdc",
    "synapse",
]


@pytest.mark.parametrize("module", ALL)
def test_every_module_documents_itself_and_guides_the_user(module, tmp_path, capsys):
    import importlib
    from pathlib import Path

    mod = importlib.import_module(f"data_scripts.{module}")
    info = mod.INFO
    assert info.licence and info.citation and info.homepage.startswith("https://") and info.files
    assert info.automated == all(f.urls for f in info.files) and (info.automated or info.manual)
    page = (Path(__file__).resolve().parents[1] / "book" / "appendix_datasets.md").read_text()
    assert f"`{info.name}`" in page and f"data_scripts.{module}" in page
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and f"usage: python -m data_scripts.{module} " in out
    assert all(opt in out for opt in ("--root", "--raw", "--download", "--cache", "--allow-partial", "--timeout"))
    assert mod.main(["--cache", str(tmp_path / "empty"), "--root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert info.files[0].filename in err and ("--download" in err or "--raw" in err)
    assert not (tmp_path / "out").exists()


def test_registry_knows_every_module():
    from mslib.data.registry import _preparation_modules

    mods = _preparation_modules()
    assert sorted(mods.values()) == sorted(ALL)


@pytest.mark.slow
def test_module_runs_as_a_command(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    kvasir_tree(tmp_path / "src", n=2)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MSLIB_DATA_DIR": str(tmp_path / "data"), "TQDM_DISABLE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "data_scripts.kvasir_seg", "--raw", str(tmp_path / "src"), "--allow-partial"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "JPEG mask thresholded at 128" in r.stdout
    h = subprocess.run(
        [sys.executable, "-m", "data_scripts.busi", "--help"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        h.returncode == 0
        and h.stdout.startswith("usage: python -m data_scripts.busi ")
        and "--folds" in h.stdout
        and (tmp_path / "data" / "kvasir-seg" / "dataset.json").is_file()
    )


# --------------------------------------------------------------------------------------------
# every prepared dataset is usable by name: load_dataset(DATA, split) as the chapters call it
# --------------------------------------------------------------------------------------------
def _raw_fixture(module: str, base):
    """Build the tiny raw layout of ``module`` under ``base`` and pack it (zip or tar.gz); return --raw."""
    from tests import fixtures_data as fx

    build = {
        "kvasir_seg": lambda: fx.kvasir_tree(base, n=5),
        "cvc_clinicdb": lambda: fx.clinicdb_tree(base, n=5),
        "polyp_benchmark": lambda: fx.pranet_tree(base),
        "busi": lambda: fx.busi_tree(base),
        "covid19_ct": lambda: fx.covid_tree(base),
        "goals": lambda: fx.goals_tree(base),
        "ph2": lambda: fx.ph2_tree(base),
        "isic2016": lambda: fx.isic_tree(base, isic2016.PARTS, n=3),
        "isic2017": lambda: fx.isic_tree(base, isic2017.PARTS, n=2, suffix="_segmentation", superpixels=True),
        "isic2016_ph2": lambda: (
            fx.isic_tree(base / "isic", {"train": isic2016.PARTS["train"]}, n=3),
            fx.ph2_tree(base / "ph2"),
        ),
        "montgomery": lambda: fx.montgomery_tree(base),
        "lung_ct": lambda: fx.lung_tree(base),
        "digestpath": lambda: fx.digestpath_tree(base),
        "acdc": lambda: fx.acdc_h5_tree(base),
        "synapse": lambda: fx.synapse_tree(base),
    }
    build[module]()
    kind = "zip" if ALL.index(module) % 2 == 0 else "tar"  # every preparer reads one kind of archive here
    return [str(pack(base, base.parent / f"{module}.{'zip' if kind == 'zip' else 'tar.gz'}", kind))]


#: splits a chapter or ``python -m mslib train`` asks for; the self-supervised evaluation sets (MS-Former
#: optimises per image and is evaluated on all of PH2 and of the lung CT slices) have ``all``/``test`` only,
#: GOALS has only its labelled training images (``train``/``val``).
SPLITS = {m: ("train", "val", "test") for m in ALL}
SPLITS.update(ph2=("all", "test"), lung_ct=("all", "test"), goals=("train", "val"))


@pytest.mark.parametrize("module", ALL)
def test_every_prepared_dataset_loads_by_name(module, tmp_path, monkeypatch, capsys):
    import importlib

    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "data"))
    mod = importlib.import_module(f"data_scripts.{module}")
    assert mod.main(["--raw", *_raw_fixture(module, tmp_path / "raw"), "--allow-partial"]) == 0, capsys.readouterr().err
    name = mod.INFO.name
    from mslib.data import list_datasets

    assert name in list_datasets()
    sizes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in SPLITS[module]:
            ds = load_dataset(name, s)
            image, m = ds[0]
            assert image.shape[0] == ds.channels and int(m.max()) < ds.num_classes and ds.meta["name"] == name
            sizes[s] = set(ds.names)
    if "val" in sizes:  # validation never overlaps what is trained on
        assert not sizes["val"] & sizes["train"] and not sizes.get("test", set()) & (sizes["train"] | sizes["val"])
    for s in {"train", "val", "test"} - set(SPLITS[module]):
        with pytest.raises(FileNotFoundError, match=f"{s}.txt is missing; available splits"):
            load_dataset(name, s)


@pytest.mark.parametrize("module", ["kvasir_seg", "acdc"])
def test_cli_trains_on_a_prepared_dataset(module, tmp_path, monkeypatch, capsys):
    """``python -m mslib train --data <name>`` on a prepared (fixture) dataset: RGB binary and
    grayscale four-class data."""
    import importlib

    from mslib import cli

    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    mod = importlib.import_module(f"data_scripts.{module}")
    assert mod.main(["--raw", *_raw_fixture(module, tmp_path / "raw"), "--allow-partial"]) == 0
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--model",
                "unet",
                "--data",
                mod.INFO.name,
                "--profile",
                "quick",
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--batch-size",
                "2",
                "--no-progress",
                "--test",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert f"on {mod.INFO.name}:" in text and "test (" in text and (out / "last.pt").is_file()
