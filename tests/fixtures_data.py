"""Builders of tiny raw datasets in their original layouts (with their quirks), archives, and a
local HTTP server, for the ``data_scripts`` tests. Nothing here touches the network."""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def rgb(h: int = 8, w: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def blob(h: int = 8, w: int = 10, r0: int = 2, c0: int = 3, size: int = 4) -> np.ndarray:
    """A 0/1 mask with a square of ones."""
    m = np.zeros((h, w), np.uint8)
    m[r0 : r0 + size, c0 : c0 + size] = 1
    return m


def save(path: Path, arr: np.ndarray, mode: str | None = None, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if mode is not None:
        im = im.convert(mode)
    im.save(path, format=fmt, **kw)
    return path


def save_mask_1bit(path: Path, mask01: np.ndarray) -> Path:
    return save(path, (mask01 * 255).astype(np.uint8), mode="1")


def save_mask_jpeg(path: Path, mask01: np.ndarray) -> Path:
    """A JPEG mask as Kvasir ships them (RGB, values spread around 0 and 255)."""
    return save(path, np.repeat((mask01 * 255).astype(np.uint8)[..., None], 3, axis=2), fmt="JPEG", quality=75)


# ------------------------------------------------------------------------------------------
# raw layouts
# ------------------------------------------------------------------------------------------
def kvasir_tree(base: Path, n: int = 4) -> dict[str, np.ndarray]:
    truth = {}
    for i in range(n):
        name = f"cju{i:04d}abc"
        m = blob(r0=1 + i % 3)
        save(base / "Kvasir-SEG" / "images" / f"{name}.jpg", rgb(seed=i), fmt="JPEG")
        save_mask_jpeg(base / "Kvasir-SEG" / "masks" / f"{name}.jpg", m)
        truth[name] = m
    (base / "Kvasir-SEG" / "kavsir_bboxes.json").write_text("{}")
    return truth


def busi_tree(base: Path) -> dict[str, np.ndarray]:
    """Three class folders; names with spaces and parentheses; ``_mask_1``; a normal empty RGB mask."""
    root = base / "Dataset_BUSI_with_GT"
    truth = {}
    for cls, k in (("benign", 4), ("malignant", 4), ("normal", 4)):
        for i in range(1, k + 1):
            stem = f"{cls} ({i})"
            save(root / cls / f"{stem}.png", rgb(seed=i))
            if cls == "normal":
                m = np.zeros((8, 10), np.uint8)
                save(root / cls / f"{stem}_mask.png", np.zeros((8, 10, 3), np.uint8))
            else:
                m = blob(r0=0, c0=0, size=3)
                save_mask_1bit(root / cls / f"{stem}_mask.png", m)
                if i == 2:
                    extra = blob(r0=5, c0=6, size=2)
                    save_mask_1bit(root / cls / f"{stem}_mask_1.png", extra)
                    m = np.maximum(m, extra)
            truth[f"{cls}_{i}"] = m
    return truth


def ph2_tree(base: Path, n: int = 3) -> dict[str, np.ndarray]:
    """``PH2 Dataset images/IMDxxx/...`` with 1-bit BMP masks and one 24-bit RGB 0/255 mask; sizes vary."""
    root = base / "PH2Dataset" / "PH2 Dataset images"
    truth = {}
    for i in range(n):
        case = f"IMD{i + 2:03d}"
        h, w = 8 + i, 10 + (i % 2)
        save(root / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp", rgb(h, w, seed=i))
        m = blob(h, w)
        if i == 1:
            save(
                root / case / f"{case}_lesion" / f"{case}_lesion.bmp",
                np.repeat((m * 255).astype(np.uint8)[..., None], 3, axis=2),
            )
        else:
            save_mask_1bit(root / case / f"{case}_lesion" / f"{case}_lesion.bmp", m)
        (root / case / f"{case}_roi").mkdir(parents=True, exist_ok=True)
        truth[case] = m
    return truth


def isic_tree(
    base: Path,
    folders: dict[str, tuple[str, str]],
    n: int = 3,
    suffix: str = "_Segmentation",
    superpixels: bool = False,
    start: int = 0,
) -> dict[str, list[str]]:
    out = {}
    k = start
    for split, (data, truth) in folders.items():
        out[split] = []
        for _ in range(n):
            name = f"ISIC_{k:07d}"
            save(base / data / f"{name}.jpg", rgb(seed=k), fmt="JPEG")
            save(base / truth / f"{name}{suffix}.png", blob() * 255)
            if superpixels:
                save(base / data / f"{name}_superpixels.png", rgb(seed=k + 100))
            out[split].append(name)
            k += 1
        if superpixels:
            (base / data / "metadata.csv").write_text("image_id,age\n")
    return out


def clinicdb_tree(base: Path, n: int = 4) -> None:
    for i in range(1, n + 1):
        save(base / "CVC-ClinicDB" / "Original" / f"{i}.tif", rgb(seed=i))
        save(base / "CVC-ClinicDB" / "Ground Truth" / f"{i}.tif", blob() * 255)


def pranet_tree(base: Path) -> None:
    for i in range(3):
        save(base / "TrainDataset" / "image" / f"{i}.png", rgb(seed=i))
        save(base / "TrainDataset" / "mask" / f"{i}.png", blob() * 255)
    for s in ("CVC-300", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "Kvasir"):
        for i in range(2):
            save(base / "TestDataset" / s / "images" / f"{i}.png", rgb(seed=i))
            m = blob() * 255
            m[0, 0] = 37  # a resampled mask value: thresholded, reported
            save(base / "TestDataset" / s / "masks" / f"{i}.png", m)


def montgomery_tree(base: Path, n: int = 4) -> None:
    root = base / "MontgomerySet"
    for i in range(n):
        name = f"MCUCXR_{i + 1:04d}_{i % 2}"
        save(root / "CXR_png" / f"{name}.png", rgb(seed=i)[..., 0])
        left, right = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
        left[1:6, 1:4], right[1:6, 6:9] = 255, 255
        save(root / "ManualMask" / "leftMask" / f"{name}.png", left)
        save(root / "ManualMask" / "rightMask" / f"{name}.png", right)


def goals_tree(base: Path, n: int = 5, bad_value: bool = False) -> None:
    root = base / "GOALS2022-Train" / "Train"
    for i in range(n):
        save(root / "Image" / f"{i + 1:04d}.png", rgb(seed=i)[..., 0])
        m = np.full((8, 10), 255, np.uint8)
        m[1], m[2], m[4] = 0, 80, 160
        if bad_value and i == 0:
            m[6, 0] = 200
        save(root / "Layer_Masks" / f"{i + 1:04d}.png", m)


def digestpath_tree(base: Path, n_pos: int = 5, n_neg: int = 5) -> None:
    for i in range(n_pos):
        stem = f"18-0053{i}A_2019-05-07 21_57_23-lv1-{i}"
        save(base / "tissue-train-pos-v1" / f"{stem}.jpg", rgb(seed=i), fmt="JPEG")
        save(base / "tissue-train-pos-v1" / f"{stem}_mask.jpg", blob() * 255, fmt="JPEG")
    for i in range(n_neg):
        save(base / "tissue-train-neg" / f"neg {i}.jpg", rgb(seed=i + 50), fmt="JPEG")


def write_h5(path: Path, image: np.ndarray, label: np.ndarray) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=image.astype(np.float32))
        f.create_dataset("label", data=label.astype(np.uint8))


def acdc_h5_tree(base: Path, train_patients=(5, 2, 9), val=(3,), test=(4,), slices: int = 3) -> dict:
    """SSL4MIS form: slices for training patients (list not sorted by patient number), volumes for val/test."""
    root = base / "ACDC"
    rng = np.random.default_rng(1)
    train_list = []
    truth = {}
    for p in train_patients:
        for fr in (1, 2):
            vol = f"patient{p:03d}_frame{fr:02d}"
            for s in range(slices):
                name = f"{vol}_slice_{s}"
                img = rng.random((6, 7)).astype(np.float32)
                lab = rng.integers(0, 4, (6, 7))
                write_h5(root / "data" / "slices" / f"{name}.h5", img, lab)
                train_list.append(name)
                truth[name] = (img, lab)
    for split, pats in (("val", val), ("test", test)):
        vols = []
        for p in pats:
            for fr in (1, 2):
                vol = f"patient{p:03d}_frame{fr:02d}"
                img, lab = rng.random((slices, 6, 7)), rng.integers(0, 4, (slices, 6, 7))
                img[0, 0, 0], img[0, 0, 1] = 0.0, 1.0
                write_h5(root / "data" / f"{vol}.h5", img, lab)
                vols.append(vol)
                truth[vol] = (img, lab)
        (root / f"{split}.list").write_text("\n".join(vols) + "\n")
    (root / "train_slices.list").write_text("\n".join(train_list) + "\n")
    return truth


def write_nifti(path: Path, data: np.ndarray, zooms=(1.5, 1.5, 5.0)) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))


def acdc_nifti_tree(base: Path, patients: int = 10, slices: int = 2) -> None:
    rng = np.random.default_rng(2)
    for p in range(1, patients + 1):
        d = base / "database" / "training" / f"patient{p:03d}"
        for fr in (1, 12):
            vol = f"patient{p:03d}_frame{fr:02d}"
            write_nifti(d / f"{vol}.nii.gz", rng.integers(0, 500, (7, 6, slices)).astype(np.int16))
            write_nifti(d / f"{vol}_gt.nii.gz", rng.integers(0, 4, (7, 6, slices)).astype(np.uint8))
        (d / "Info.cfg").write_text("ED: 1\nES: 12\n")
    t = base / "database" / "testing" / "patient101"
    write_nifti(t / "patient101_frame01.nii.gz", np.zeros((7, 6, slices), np.int16))
    write_nifti(t / "patient101_frame01_gt.nii.gz", np.zeros((7, 6, slices), np.uint8))


def synapse_tree(base: Path, train_cases=("case0005", "case0006"), test_cases=("case0001",), slices: int = 2) -> None:
    root = base / "Synapse"
    rng = np.random.default_rng(3)
    names = []
    for c in train_cases:
        for s in range(slices):
            name = f"{c}_slice{s:03d}"
            (root / "train_npz").mkdir(parents=True, exist_ok=True)
            np.savez(
                root / "train_npz" / f"{name}.npz",
                image=rng.random((6, 6)).astype(np.float32),
                label=rng.integers(0, 9, (6, 6)).astype(np.float32),
            )
            names.append(name)
    for c in test_cases:
        write_h5(root / "test_vol_h5" / f"{c}.npy.h5", rng.random((slices, 6, 6)), rng.integers(0, 9, (slices, 6, 6)))
    lists = base / "lists" / "lists_Synapse"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(names) + "\n")
    (lists / "test_vol.txt").write_text("\n".join(test_cases) + "\n")


def covid_tree(base: Path, medseg: bool = True) -> None:
    """Zenodo 3757476 naming: CT ``*_org_*`` in HU or 0..255 (radiopaedia), masks without ``_org``."""
    rng = np.random.default_rng(4)
    cases = {
        "coronacases_org_001": "coronacases_001",
        "coronacases_org_002": "coronacases_002",
        "radiopaedia_org_covid-19-pneumonia-10_85902_1-dcm": "radiopaedia_10_85902_1",
    }
    for ct, mk in cases.items():
        data = rng.integers(0, 255, (8, 8, 6)) if ct.startswith("radio") else rng.integers(-1024, 400, (8, 8, 6))
        write_nifti(base / "COVID-19-CT-Seg_20cases" / f"{ct}.nii.gz", data.astype(np.int16))
        write_nifti(base / "Infection_Mask" / f"{mk}.nii.gz", rng.integers(0, 2, (8, 8, 6)).astype(np.uint8))
    if medseg:
        write_nifti(base / "medseg" / "tr_im.nii.gz", rng.integers(-1024, 400, (8, 8, 2)).astype(np.int16))
        write_nifti(base / "medseg" / "tr_mask.nii.gz", rng.integers(0, 4, (8, 8, 2)).astype(np.uint8))


def lung_tree(base: Path, shapes=((8, 8, 3), (8, 8, 4))) -> None:
    rng = np.random.default_rng(5)
    for i, shp in enumerate(shapes):
        write_nifti(base / "3d_images" / f"IMG_{i + 2:04d}.nii.gz", rng.integers(-1024, 400, shp).astype(np.int16))
        write_nifti(base / "3d_images" / f"MASK_{i + 2:04d}.nii.gz", (rng.integers(0, 2, shp) * 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------
# archives
# ------------------------------------------------------------------------------------------
def pack(tree: Path, archive: Path, kind: str = "zip") -> Path:
    """Pack every file under ``tree`` (paths relative to ``tree``) into a zip or a tar.gz."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in files:
                zf.write(p, p.relative_to(tree).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for p in files:
                tf.add(p, p.relative_to(tree).as_posix())
    return archive


def zip_with(archive: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return archive


def tar_with(archive: Path, members: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None) -> Path:
    """``links``: name -> (target, type) with type ``tarfile.SYMTYPE``/``LNKTYPE``/``CHRTYPE``."""
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (target, typ) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = typ
            info.linkname = target
            tf.addfile(info)
    return archive


# ------------------------------------------------------------------------------------------
# a local HTTP server
# ------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_after: int | None = None  # close after sending this many body bytes (once)
    ranges: bool = True
    log: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        data = self.files.get(self.path.split("?")[0])
        self.log.append({"path": self.path, "range": self.headers.get("Range")})
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and self.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def silent_server(send_headers: bytes | None = None):
    """A 127.0.0.1 server that accepts connections and then says nothing (``send_headers=None``) or
    sends ``send_headers`` and stalls in the body: what a dead proxy or a hung mirror looks like.
    Yields the base URL."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)
    stop = threading.Event()
    conns = []

    def run():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conns.append(conn)
            if send_headers is not None:
                try:
                    conn.recv(65536)
                    conn.sendall(send_headers)
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for c in conns:
            c.close()
        srv.close()


@contextmanager
def http_server(files: dict[str, bytes], cut_after: int | None = None, ranges: bool = True):
    """Serve ``files`` (URL path -> bytes) on 127.0.0.1 at a free port; yields ``(base_url, handler_class)``."""
    handler = type("Handler", (_Handler,), {"files": dict(files), "cut_after": cut_after, "ranges": ranges, "log": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def leftovers(folder: Path) -> list[str]:
    """Hidden partial/temporary entries left in ``folder`` (there should be none)."""
    return (
        sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") or p.name.endswith(".part"))
        if Path(folder).exists()
        else []
    )


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "io")]
