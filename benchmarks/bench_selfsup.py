"""MS-Former per-image optimisation: speed/memory, and honest quality against k-means.

    .venv/bin/python -m benchmarks.bench_selfsup [--time] [--sizes 128 257] [--n 2]
    .venv/bin/python -m benchmarks.bench_selfsup --eval synthetic [--n 20] [--size 128] [--seed 2024]
    .venv/bin/python -m benchmarks.bench_selfsup --eval folder --data DIR [--split test] [--n 20] [--size 257]
        [--subset even|odd] [--published]
    .venv/bin/python -m benchmarks.bench_selfsup --eval isic [--data ../shared/data/isic2016-crops]
    .venv/bin/python -m benchmarks.bench_selfsup --ablation [--n 12] [--profile quick]
    .venv/bin/python -m benchmarks.bench_selfsup --engine-overhead [--size 257] [--n 3] [--rounds 2]
    .venv/bin/python -m benchmarks.bench_selfsup --speed-candidates [--size 257] [--steps 5] [--rounds 2]
    (add --set key=value ... to override MSFormerConfig fields, e.g. --set lambdas=1,5,1.2)

``--time`` runs each size in a fresh subprocess on synthetic skin images and reports the mean
wall time per image, the mean number of SGD steps, and the process's peak resident set size
(``ru_maxrss``, everything: Python, torch, data; and the part added by the optimisation, over
the peak after imports and a warm-up), to compare with the official code's
148 s/image and 6.2 GB peak at 257 px on 2 CPU cores (notes §3).

``--eval`` reports DSC / HM / XOR (×100, MS-Former Table 1) under the paper's protocol, the
best-overlap cluster with any id and *no* ground-truth crop, for MS-Former and for k-means on
pixel colours (K = ``kmeans_k``, 3 for skin) on the same resized images; the legacy
GT-dilated crop is shown in extra columns only. Both methods are evaluated at the mask's
own resolution (cluster maps resized back with nearest neighbour). A second k-means row uses,
per image, as many clusters as MS-Former ended with, so that a gain cannot come from the
cluster count alone. Without the ISIC folder ``--eval isic`` says where to put it and exits.

``--eval folder --data DIR`` runs the same comparison on your own copy of a dermoscopy dataset,
in any of three layouts (detected, in this order):

* the prepared layout (``images/NAME.*``, ``masks/NAME.png`` with 0 = background, optional
  ``splits/{train,val,test}.txt``: ``--split test`` by default, every image when the split file is missing);
* the raw ISIC layout (``images/NAME.jpg``, ``masks/NAME_Segmentation.png``);
* the raw PH2 layout (``.../PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` and
  ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``; ``--data`` may point at any folder above ``IMDxxx``).

It prints DSC / HM / XOR ×100, the recall and precision of the chosen cluster (×100), and the
share of images on which MS-Former's DSC beats k-means' (K = ``kmeans_k``), honest protocol first,
the legacy GT crop in extra columns. A last row scores the trivial map with one cluster (the
whole image called "lesion"): on sets where lesions fill the frame it scores high, and a method
is only worth its DSC where it beats that row too. A second table gives the DSC by lesion area
(under 20 %, 20-45 %, 45 % and more of the image). ``--per-image`` adds one row per image.

``--ablation`` is MS-Former Table 2 on synthetic skin images: CE only, CE + inter, CE + intra,
all three (the current defaults), and the published setting (``MSFormerConfig.PUBLISHED``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import print_table
from mslib.clustering import evaluate_clusters, kmeans_labels
from mslib.configs import MSFormerConfig, get_config
from mslib.recipes.msformer import prepare_image, segment_images

DEFAULT_ISIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic2016-crops"


def _parse_set(items: list[str]) -> dict:
    out = {}
    fields = {f.name: f for f in dataclasses.fields(MSFormerConfig)}
    for item in items:
        key, _, val = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set {item}: unknown MSFormerConfig field {key!r}; fields: {sorted(fields)}")
        if key == "lambdas":
            out[key] = tuple(float(v) for v in val.split(","))
        else:
            out[key] = (
                json.loads(val)
                if val
                not in (
                    "conv3x3",
                    "patch",
                    "hv",
                    "diagonal",
                    "matrix",
                    "rowwise",
                    "all",
                    "last",
                    "mean",
                    "sum",
                    "rgb",
                    "lab",
                )
                else val
            )
    return out


def load_isic(root: Path, n: int | None = None):
    from PIL import Image

    root = Path(root)
    if not (root / "images").is_dir():
        raise SystemExit(
            f"--eval isic: {root / 'images'} does not exist. Point --data at a folder with "
            "images/ISIC_*.jpg and masks/ISIC_*_Segmentation.png (e.g. the team's isic2016-crops "
            "sample), or prepare ISIC with data_scripts and use the book's DATA parameter."
        )
    imgs = sorted((root / "images").glob("*.jpg"))
    if not imgs:
        raise SystemExit(f"no images in {root / 'images'}; pass --data pointing at the isic2016-crops folder")
    images, masks = [], []
    for p in imgs[:n]:
        m = root / "masks" / f"{p.stem}_Segmentation.png"
        if not m.exists():
            raise SystemExit(f"missing mask {m} for image {p}")
        images.append(np.asarray(Image.open(p).convert("RGB")))
        masks.append((np.asarray(Image.open(m).convert("L")) > 127).astype(np.uint8))
    return images, masks


def _read_mask(path: Path) -> np.ndarray:
    """A binary (H, W) uint8 lesion mask: class indices > 0, or 0/255 (and JPEG-ish) masks thresholded at 128."""
    from PIL import Image

    m = np.asarray(Image.open(path).convert("L"))
    return (m > 127).astype(np.uint8) if m.max() > 1 else (m > 0).astype(np.uint8)


def _folder_pairs(root: Path, split: str | None) -> tuple[str, list[tuple[str, Path, Path]]]:
    """(layout name, [(name, image path, mask path)]) of a prepared, raw ISIC or raw PH2 folder."""
    from mslib.data.folder import IMAGE_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise SystemExit(
            f"--data {root}: no such folder. Point it at a prepared dataset (images/, masks/, "
            "splits/), an ISIC folder (images/*.jpg, masks/*_Segmentation.png) or the PH2 folder "
            "('PH2 Dataset images/IMDxxx/...')."
        )
    ph2 = sorted(root.glob("**/IMD*_Dermoscopic_Image/*.bmp"))
    if (root / "images").is_dir():
        files = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        layout = "prepared"
        split_file = root / "splits" / f"{split}.txt" if split else None
        if split_file is not None and split_file.is_file():
            keep = {ln.strip() for ln in split_file.read_text().splitlines() if ln.strip()}
            files = [p for p in files if p.stem in keep]
            layout = f"prepared, split {split}"
        pairs = []
        for p in files:
            cands = [root / "masks" / f"{p.stem}.png", root / "masks" / f"{p.stem}_Segmentation.png"]
            m = next((c for c in cands if c.is_file()), None)
            if m is None:
                raise SystemExit(
                    f"--eval folder: no mask for {p}: expected {cands[0]} (prepared layout) or {cands[1]} (ISIC layout)"
                )
            if m.name.endswith("_Segmentation.png"):
                layout = "ISIC"
            pairs.append((p.stem, p, m))
    elif ph2:
        layout, pairs = "PH2", []
        for p in ph2:
            case = p.parent.parent
            m = case / f"{case.name}_lesion" / f"{case.name}_lesion.bmp"
            if not m.is_file():
                raise SystemExit(f"--eval folder: PH2 case {case} has no lesion mask {m}")
            pairs.append((case.name, p, m))
    else:
        raise SystemExit(
            f"--eval folder: {root} holds neither images/ + masks/ (prepared or ISIC layout) nor PH2's "
            "IMDxxx/IMDxxx_Dermoscopic_Image/*.bmp; point --data at the dataset's root"
        )
    if not pairs:
        raise SystemExit(f"--eval folder: no images found under {root} ({layout}); check --data and --split")
    return layout, pairs


def load_folder(root: Path, n: int | None = None, split: str | None = "test"):
    """``(layout, names, images, masks)`` of a dermoscopy folder (prepared, raw ISIC or raw PH2 layout).

    Images are (H, W, 3) uint8 at their own size, masks (H, W) uint8 in {0, 1}; a size mismatch is an
    error naming the files. ``n`` keeps the first ``n`` images (sorted by name)."""
    from PIL import Image

    layout, pairs = _folder_pairs(root, split)
    names, images, masks = [], [], []
    for name, ip, mp in pairs[:n]:
        im, m = np.asarray(Image.open(ip).convert("RGB")), _read_mask(mp)
        if im.shape[:2] != m.shape:
            raise SystemExit(f"--eval folder: image {ip} is {im.shape[:2]} but its mask {mp} is {m.shape}")
        names.append(name)
        images.append(im)
        masks.append(m)
    return layout, names, images, masks


def _kmeans_at(image, size: int, k: int, out_hw) -> torch.Tensor:
    x = prepare_image(image, size, standardize=False)[0]
    lab = kmeans_labels(x, k, seed=0)
    return torch.nn.functional.interpolate(lab[None, None].float(), size=out_hw, mode="nearest")[0, 0].long()


def score_maps(maps, masks) -> dict[str, np.ndarray]:
    """Per-image DSC, HM, XOR, recall and precision of the best-overlap cluster (fractions), honest and with
    the legacy GT crop (keys ``legacy_*``)."""
    from mslib import metrics
    from mslib.clustering import best_overlap_cluster, legacy_gt_crop

    out: dict[str, list] = {}
    for lab, m in zip(maps, masks):
        g = torch.from_numpy(np.asarray(m))
        honest, _ = best_overlap_cluster(lab, g)
        for prefix, pred in (("", honest), ("legacy_", legacy_gt_crop(honest, g))):
            for k, fn in (
                ("dsc", metrics.dice),
                ("hm", metrics.hammoude_distance),
                ("xor", metrics.xor_error),
                ("recall", metrics.recall),
                ("precision", metrics.precision),
            ):
                out.setdefault(prefix + k, []).append(float(fn(pred[None], g[None])[0]))
    return {k: np.asarray(v) for k, v in out.items()}


#: the trivial baseline: one cluster, so the best-overlap protocol calls the whole image "lesion". Where it
#: scores high (lesions that fill the frame), the set cannot tell a method from doing nothing.
WHOLE = "whole image (1 cluster, no method)"


def compare(images, masks, cfg: MSFormerConfig, progress: bool = True) -> dict:
    """MS-Former and k-means (K = ``cfg.kmeans_k``, and K = MS-Former's final count) on the same images at
    ``cfg.image_size``, scored at each mask's resolution: ``{method: score_maps(...)}`` plus ``results``."""
    t0 = time.perf_counter()
    results = segment_images(images, cfg, progress=progress)
    secs = (time.perf_counter() - t0) / len(images)
    kmeans = [_kmeans_at(im, cfg.image_size, cfg.kmeans_k, m.shape) for im, m in zip(images, masks)]
    matched = [
        _kmeans_at(im, cfg.image_size, max(r.n_clusters, 1), m.shape) for im, m, r in zip(images, masks, results)
    ]
    return {
        "MS-Former": score_maps([r.labels for r in results], masks),
        f"k-means (K={cfg.kmeans_k})": score_maps(kmeans, masks),
        "k-means (K = MS-Former's final count)": score_maps(matched, masks),
        WHOLE: score_maps([torch.zeros(m.shape, dtype=torch.long) for m in masks], masks),
        "results": results,
        "seconds": secs,
    }


def select_subset(names: list[str], subset: str) -> list[int]:
    """Indices of ``names`` in ``subset``: ``all``, or ``even`` / ``odd`` by the last number in each name
    (``ISIC_0000012`` -> 12, ``IMD003`` -> 3). The team's split of the 20 ISIC crops: ``even`` is the half the
    defaults were tuned on, ``odd`` the held-out half."""
    import re

    if subset == "all":
        return list(range(len(names)))
    if subset not in ("even", "odd"):
        raise SystemExit(f"--subset {subset!r}: use all, even or odd")
    keep = []
    for i, name in enumerate(names):
        nums = re.findall(r"\d+", name)
        if not nums:
            raise SystemExit(f"--subset {subset}: image name {name!r} holds no number; use --subset all")
        if (int(nums[-1]) % 2 == 0) == (subset == "even"):
            keep.append(i)
    return keep


def _eval_data(
    source: str, cfg: MSFormerConfig, n: int | None, data: Path, seed: int, split: str | None, subset: str = "all"
):
    if source == "synthetic":
        from mslib.data.synthetic import make_batch

        ims, mks = make_batch("skin", n or 20, cfg.image_size, seed=seed)
        return f"synthetic skin (seed {seed})", [f"skin_{i}" for i in range(len(ims))], list(ims), list(mks)
    if source == "dermoscopy":
        from mslib.data.synthetic_dermoscopy import make_batch

        ims, mks = make_batch(n or 20, cfg.image_size, seed=seed)
        return f"synthetic dermoscopy (seed {seed})", [f"derm_{i}" for i in range(len(ims))], list(ims), list(mks)
    if source == "isic":  # the team's crops: the raw ISIC layout of --eval folder, every image
        if not (Path(data) / "images").is_dir():
            load_isic(data)  # exits with where to put the crops
        split = None
    layout, names, images, masks = load_folder(data, None if subset != "all" else n, split)
    keep = select_subset(names, subset)[:n]
    what = f"{data} ({layout})" + ("" if subset == "all" else f", {subset}-numbered images")
    return what, [names[i] for i in keep], [images[i] for i in keep], [masks[i] for i in keep]


#: lesion-area bins of the by-area table (share of the image the mask covers): small lesions are where a
#: stop at few clusters merges the lesion with the skin, large ones where a lesion split over clusters costs
AREA_BINS = ((0.0, 0.2), (0.2, 0.45), (0.45, 1.01))


def by_area(masks, scores: dict[str, dict[str, np.ndarray]]) -> list[list[str]]:
    """Mean DSC ×100 of each method per lesion-area bin (:data:`AREA_BINS`), one row per bin, with the
    number of images in it; a bin without images prints ``-``."""
    area = np.array([float(np.asarray(m).astype(bool).mean()) for m in masks])
    rows = []
    for lo, hi in AREA_BINS:
        sel = (area >= lo) & (area < hi)
        label = f"{100 * lo:.0f}-{min(100 * hi, 100):.0f} %"
        rows.append(
            [label, int(sel.sum())]
            + [f"{100 * float(np.mean(sc['dsc'][sel])):.1f}" if sel.any() else "-" for sc in scores.values()]
        )
    return rows


def run_eval(
    source: str,
    cfg: MSFormerConfig,
    n: int | None,
    data: Path,
    seed: int = 123,
    split: str | None = "test",
    per_image: bool = False,
    subset: str = "all",
) -> str:
    what, names, images, masks = _eval_data(source, cfg, n, data, seed, split, subset)
    c = compare(images, masks, cfg)
    results, km = c["results"], f"k-means (K={cfg.kmeans_k})"
    rows = []
    for name in ("MS-Former", km, "k-means (K = MS-Former's final count)", WHOLE):
        sc = c[name]
        rows.append(
            [name]
            + [f"{100 * np.nanmean(sc[k]):.1f}" for k in ("dsc", "hm", "xor", "recall", "precision")]
            + [f"{100 * np.nanmean(sc['legacy_' + k]):.1f}" for k in ("dsc", "hm", "xor")]
        )
    wins = int(np.sum(c["MS-Former"]["dsc"] > c[km]["dsc"]))
    its = np.mean([r.iterations for r in results])
    ncl = np.mean([r.n_clusters for r in results])
    title = (
        f"{what}: {len(images)} images at {cfg.image_size} px, best-overlap cluster; MS-Former beats k-means on "
        f"{wins}/{len(images)} images ({100 * wins / len(images):.0f} %); {c['seconds']:.1f} s/image, "
        f"{its:.1f} SGD steps, {ncl:.1f} clusters on average"
    )
    out = print_table(
        rows,
        ["method", "DSC", "HM", "XOR", "recall", "precision", "DSC (legacy GT crop)", "HM (legacy)", "XOR (legacy)"],
        title=title,
    )
    names_by = ("MS-Former", km, WHOLE)
    out += "\n" + print_table(
        by_area(masks, {k: c[k] for k in names_by}),
        ["lesion area", "images", *[f"{k.split(' (')[0]} DSC" for k in names_by]],
        title="DSC by lesion area (share of the image the mask covers)",
    )
    if per_image:
        prow = [
            [
                nm,
                f"{100 * m.mean():.0f}",
                f"{100 * c['MS-Former']['dsc'][i]:.1f}",
                f"{100 * c[km]['dsc'][i]:.1f}",
                f"{100 * c['MS-Former']['recall'][i]:.0f}",
                f"{100 * c['MS-Former']['precision'][i]:.0f}",
                results[i].iterations,
                results[i].n_clusters,
            ]
            for i, (nm, m) in enumerate(zip(names, masks))
        ]
        out += "\n" + print_table(
            prow,
            ["image", "lesion %", "MS-Former DSC", "k-means DSC", "recall", "precision", "SGD steps", "clusters"],
            title="per image",
        )
    return out


def run_ablation(cfg: MSFormerConfig, n: int) -> str:
    """MS-Former Table 2 on synthetic skin images (same images and seeds for every row)."""
    from mslib.data.synthetic import make_batch

    images, masks = make_batch("skin", n, cfg.image_size, seed=123)
    rows = []
    l1, l2, l3 = cfg.lambdas  # each row switches terms off from the configured weights
    rows_lam = (("CE only", (l1, 0.0, 0.0)), ("CE + inter", (l1, l2, 0.0)), ("CE + intra", (l1, 0.0, l3)))
    variants = [(f"{name} {lam}", dataclasses.replace(cfg, lambdas=lam)) for name, lam in rows_lam]
    variants += [
        (f"CE + inter + intra {tuple(cfg.lambdas)} (default)", cfg),
        (
            "published: out_norm=False, (1, 2, 1.2), K=100, Mix-FFN x4",
            dataclasses.replace(cfg, **MSFormerConfig.PUBLISHED),
        ),
    ]
    for name, c in variants:
        res = segment_images(list(images), c, progress=False)
        ev = [evaluate_clusters(r.labels, torch.from_numpy(m)) for r, m in zip(res, masks)]
        mean = lambda k, ev=ev: 100 * float(torch.cat([e[k] for e in ev]).mean())  # noqa: E731
        rows.append(
            [
                name,
                f"{mean('dsc'):.1f}",
                f"{mean('hm'):.1f}",
                f"{mean('xor'):.1f}",
                f"{np.mean([r.n_clusters for r in res]):.1f}",
                f"{np.mean([r.iterations for r in res]):.1f}",
            ]
        )
    return print_table(
        rows,
        ["losses (lambda1, lambda2, lambda3)", "DSC", "HM", "XOR", "clusters", "SGD steps"],
        title=f"Loss ablation (MS-Former Table 2 style): {n} synthetic skin images at "
        f"{cfg.image_size} px, best-overlap cluster, no GT crop",
    )


def _time_cell(size: int, images_npy: str, overrides: dict, device: str = "cpu") -> dict:
    """One timing cell, in its own process: only torch and mslib's self-supervised loop are imported
    (the images come from a ``.npy`` file written by the parent, not from the generator). On a GPU
    (``device="cuda"``) the peak is the GPU's (``torch.cuda.max_memory_allocated``), not the process's."""
    cfg = dataclasses.replace(get_config("msformer", "paper"), image_size=size, **overrides)
    ims = np.load(images_npy)
    cuda = device.startswith("cuda")
    segment_images(
        [ims[0, :32, :32]], dataclasses.replace(cfg, image_size=32, max_iters=2), progress=False, device=device
    )  # warm-up of the kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # imports (torch ~0.5 GB), data, warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.max_memory_allocated() / 2**20
    t0 = time.perf_counter()
    res = segment_images(list(ims), cfg, progress=False, device=device)
    if cuda:
        torch.cuda.synchronize()
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    )
    return {
        "seconds": (time.perf_counter() - t0) / len(ims),
        "iters": float(np.mean([r.iterations for r in res])),
        "peak_mb": peak,
        "base_mb": base,
        "clusters": float(np.mean([r.n_clusters for r in res])),
    }


def run_time(sizes: list[int], n: int, threads: int, items: list[str], device: str = "cpu") -> str:
    """Mean wall time and peak RSS per image, each size in a fresh process; glibc's default heap and a
    fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_=131072``: large tensors go back to the system when
    freed instead of staying in the heap) are both shown."""
    import os
    import tempfile

    from mslib.data.synthetic import make_batch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            ims, _ = make_batch("skin", n, size, seed=7)
            path = str(Path(tmp) / f"skin_{size}.npy")
            np.save(path, np.stack([np.asarray(i) for i in ims]))  # (n, H, W, 3) uint8
            heaps = [("glibc default", {}), ("MALLOC_MMAP_THRESHOLD_=131072", {"MALLOC_MMAP_THRESHOLD_": "131072"})]
            if device != "cpu":  # the GPU's memory is what counts there
                heaps = [(f"{device}: GPU memory allocated", {})]
            for heap, env in heaps:
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_selfsup",
                    "--threads",
                    str(threads),
                    "--time-cell",
                    str(size),
                    path,
                    "--device",
                    device,
                    *sum((["--set", s] for s in items), []),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append(
                    [
                        size,
                        heap,
                        f"{r['seconds']:.2f}",
                        f"{r['iters']:.1f}",
                        f"{r['seconds'] / max(r['iters'] + 1, 1):.3f}",
                        f"{r['peak_mb']:.0f}",
                        f"{r['peak_mb'] - r['base_mb']:.0f}",
                        f"{148 / r['seconds']:.1f}x",
                    ]
                )
    return print_table(
        rows,
        [
            "size px",
            "heap",
            "s / image",
            "SGD steps",
            "s / step",
            "peak RSS MB",
            "of which optimisation MB",
            "vs official 148 s",
        ],
        title=f"MS-Former per-image optimisation on {device} ({threads} CPU threads), {n} synthetic skin images, "
        "paper profile (official code at 257 px: 148 s/image, 6.2 GB peak)",
    )


def _direct_loop(image, cfg, seed: int):
    """The per-image loop written out by hand (what ``mslib.train.selfsup`` ran before it moved onto the
    engine): the reference for :func:`run_engine_overhead`. Returns (labels, SGD steps)."""
    from mslib.losses.scale_consistency import joint_loss
    from mslib.recipes.msformer import build_model

    x = prepare_image(image, cfg.image_size, cfg.standardize, cfg.color_space)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, x.shape[1])
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    it = 0
    while True:
        last = it >= cfg.max_iters
        with torch.set_grad_enabled(not last):
            out = model(x, with_tokens=bool(cfg.lambdas[2]))
            loss, _ = joint_loss(out, tuple(cfg.lambdas), cfg.inter_mode, cfg.inter_blocks, cfg.intra_reduction)
        labels = out.logits.detach()[0].argmax(0)
        if int(labels.unique().numel()) <= cfg.min_clusters or last:
            return labels, it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1


def run_engine_overhead(size: int, n: int, rounds: int) -> str:
    """Seconds per SGD step of the per-image optimisation on the engine (``segment_image``) and of the
    same loop written by hand, interleaved in one process on the same images and seeds; the maps must agree."""
    from mslib.data.synthetic import make_batch
    from mslib.recipes.msformer import segment_image

    cfg = dataclasses.replace(get_config("msformer", "paper"), image_size=size)
    ims, _ = make_batch("skin", n, size, seed=7)
    segment_image(ims[0][:32, :32], dataclasses.replace(cfg, image_size=32, max_iters=2))  # warm-up
    t = {"engine": [0.0, 0, 0.0], "direct": [0.0, 0, 0.0]}  # wall s, forward passes, CPU s
    same = True
    for r in range(rounds):
        for i, im in enumerate(ims):
            order = ("engine", "direct") if (r + i) % 2 == 0 else ("direct", "engine")
            for kind in order:
                t0, c0 = time.perf_counter(), time.process_time()
                if kind == "engine":
                    res = segment_image(im, cfg, seed=i)
                    labels, steps = res.labels_work, res.iterations
                else:
                    labels, steps = _direct_loop(im, cfg, seed=i)
                t[kind][0] += time.perf_counter() - t0
                t[kind][2] += time.process_time() - c0
                t[kind][1] += steps + 1  # forward passes (the last has no update)
                if kind == "engine":
                    eng = labels
                else:
                    dirl = labels
            same &= bool(torch.equal(eng, dirl))
    per = {k: v[0] / v[1] for k, v in t.items()}
    cpu = {k: v[2] / v[1] for k, v in t.items()}
    rows = [[size, k, f"{per[k]:.4f}", f"{cpu[k]:.4f}", t[k][1]] for k in ("direct", "engine")]
    rows.append(
        [
            size,
            "engine / direct",
            f"{per['engine'] / per['direct']:.3f}",
            f"{cpu['engine'] / cpu['direct']:.3f}",
            "maps identical" if same else "MAPS DIFFER",
        ]
    )
    return print_table(
        rows,
        ["size px", "loop", "wall s / forward pass", "CPU s / forward pass", "forward passes"],
        title=f"MS-Former per-image loop on the engine vs written by hand ({n} images x {rounds} "
        f"rounds, interleaved, {torch.get_num_threads()} threads)",
    )


#: speed candidates of issue 15 that need no code change: (name, MSFormerConfig overrides)
SPEED_CANDIDATES = (
    ("defaults", {}),
    ("narrower embedding dim=16, intra_dim=32", {"dim": 16, "intra_dim": 32}),
    ("Mix-FFN x1 (mlp_ratio=1)", {"mlp_ratio": 1.0}),
)


def _autocast_forward(forward):
    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    return wrapped


def run_speed_candidates(size: int, steps: int, rounds: int, channels_last: bool = True) -> str:
    """Seconds per forward pass (+ SGD step) of each candidate against the defaults, interleaved in one process
    on the same image (no early stop: ``min_clusters=1``, ``max_iters=steps``), so that a loaded machine slows
    every candidate alike; the ratio is what to read. ``channels_last`` adds the defaults with the input and model
    in ``torch.channels_last``; a last row runs the defaults' forward under CPU bfloat16 autocast."""
    from mslib.data.synthetic_dermoscopy import make_sample
    from mslib.recipes.msformer import build_model
    from mslib.train.selfsup import optimise_image

    base = dataclasses.replace(get_config("msformer", "paper"), image_size=size, max_iters=steps, min_clusters=1)
    image, _ = make_sample(size, 7)
    cands = [(n, dataclasses.replace(base, **o), None) for n, o in SPEED_CANDIDATES]
    if channels_last:
        cands.append(("defaults, channels_last", base, "channels_last"))
    if torch.backends.mkldnn.is_available():
        cands.append(("defaults, bfloat16 autocast", base, "bfloat16"))
    segment_images([image[:32, :32]], dataclasses.replace(base, image_size=32, max_iters=2), progress=False)
    t = {n: 0.0 for n, _, _ in cands}
    for r in range(rounds):
        for name, c, mode in cands if r % 2 == 0 else cands[::-1]:
            x = prepare_image(image, c.image_size, c.standardize, c.color_space)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build_model(c, 3)
            if mode == "channels_last":
                model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            elif mode == "bfloat16":  # the forward under CPU autocast; losses and SGD in float32
                model.forward = _autocast_forward(model.forward)
            t0 = time.perf_counter()
            optimise_image(x, model, c)
            t[name] += time.perf_counter() - t0
    per = {n: v / (rounds * (steps + 1)) for n, v in t.items()}
    d = per["defaults"]
    rows = [[size, n, f"{per[n]:.3f}", f"{per[n] / d:.2f}"] for n, _, _ in cands]
    return print_table(
        rows,
        ["size px", "candidate", "s / step", "vs defaults"],
        title=f"MS-Former speed candidates, interleaved in one process ({rounds} rounds x {steps + 1} "
        f"forward passes, {torch.get_num_threads()} threads)",
    )


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", action="store_true")
    ap.add_argument(
        "--eval",
        choices=["synthetic", "dermoscopy", "isic", "folder"],
        help="synthetic: the skin task; dermoscopy: mslib.data.synthetic_dermoscopy; isic: the team's "
        "ISIC crops; folder: --data DIR in the prepared, raw ISIC or raw PH2 layout",
    )
    ap.add_argument(
        "--split",
        default="test",
        help="--eval folder, prepared layout: the split file to read (all images when it is missing)",
    )
    ap.add_argument("--per-image", action="store_true", help="--eval: one row per image too")
    ap.add_argument(
        "--published",
        action="store_true",
        help="--eval: the published setting (MSFormerConfig.PUBLISHED: lr 0.1, lambdas (1, 2, 1.2), K=100, "
        "Mix-FFN x4, softmax(z), stop at 3, input in [0, 1]) instead of the defaults",
    )
    ap.add_argument(
        "--subset",
        default="all",
        choices=["all", "even", "odd"],
        help="--eval isic/folder: only the images whose name ends in an even/odd number (ISIC crops: even = "
        "the tuning half of the defaults, odd = held out)",
    )
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument(
        "--engine-overhead",
        action="store_true",
        help="time the per-image loop on the engine against the same loop written by hand",
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--speed-candidates",
        action="store_true",
        help="s/step of the speed candidates against the "
        "defaults, interleaved in one process (--size, --steps, --rounds)",
    )
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile", default="paper", choices=["quick", "paper"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 257])  # the quick and paper sizes
    ap.add_argument("--size", type=int, default=None, help="working size for --eval (default: the profile's)")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="--eval folder: the dataset folder; --eval isic: the ISIC crops (default ../shared/data/isic2016-crops)",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=123,
        help="synthetic image set for --eval synthetic (123: the tuning set of the defaults; 2024: held out)",
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--device", default="cpu", help="--time: cpu or cuda (on a GPU the peak column is GPU memory allocated)"
    )
    ap.add_argument("--time-cell", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = _parse_set(args.set)
    if args.time_cell:
        print(json.dumps(_time_cell(int(args.time_cell[0]), args.time_cell[1], overrides, args.device)))
        return ""
    if args.speed_candidates:
        return run_speed_candidates(args.size or 257, args.steps, args.rounds)
    if args.engine_overhead:
        return run_engine_overhead(args.size or 257, args.n or 3, args.rounds)
    if args.eval:
        cfg = get_config("msformer", args.profile)
        if args.published:  # MSFormerConfig.PUBLISHED first, then any --set on top
            cfg = dataclasses.replace(cfg, **MSFormerConfig.PUBLISHED)
        cfg = dataclasses.replace(cfg, **overrides)
        if args.size:
            cfg = dataclasses.replace(cfg, image_size=args.size)
        if args.eval == "folder" and args.data is None:
            raise SystemExit("--eval folder needs --data DIR (a prepared dataset, an ISIC folder or the PH2 folder)")
        return run_eval(
            args.eval, cfg, args.n, args.data or DEFAULT_ISIC, args.seed, args.split, args.per_image, args.subset
        )
    if args.ablation:
        cfg = dataclasses.replace(get_config("msformer", args.profile), **overrides)
        if args.size:
            cfg = dataclasses.replace(cfg, image_size=args.size)
        return run_ablation(cfg, args.n or 12)
    # --time, and the default (``make bench``): per-image speed and memory
    return run_time(args.sizes, args.n or 2, args.threads, args.set, args.device)


if __name__ == "__main__":
    main()
