"""MS-Former per-image optimisation: speed/memory, and honest quality against k-means.

    .venv/bin/python -m benchmarks.bench_selfsup [--time] [--sizes 128 257] [--n 2]
    .venv/bin/python -m benchmarks.bench_selfsup --eval synthetic [--n 20] [--size 128] [--seed 2024]
    .venv/bin/python -m benchmarks.bench_selfsup --eval isic [--data ../shared/data/isic2016-crops]
    .venv/bin/python -m benchmarks.bench_selfsup --ablation [--n 12] [--profile quick]
    .venv/bin/python -m benchmarks.bench_selfsup --engine-overhead [--size 257] [--n 3] [--rounds 2]
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
            out[key] = json.loads(val) if val not in ("conv3x3", "patch", "hv", "diagonal", "matrix", "rowwise",
                                                      "all", "last", "mean", "sum") else val
    return out


def load_isic(root: Path, n: int | None = None):
    from PIL import Image

    root = Path(root)
    if not (root / "images").is_dir():
        raise SystemExit(f"--eval isic: {root / 'images'} does not exist. Point --data at a folder with images/ISIC_*.jpg "
                         "and masks/ISIC_*_Segmentation.png (e.g. the team's isic2016-crops sample), or prepare ISIC "
                         "with data_scripts and use the book's DATA parameter.")
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


def _kmeans_at(image, size: int, k: int, out_hw) -> torch.Tensor:
    x = prepare_image(image, size, standardize=False)[0]
    lab = kmeans_labels(x, k, seed=0)
    return torch.nn.functional.interpolate(lab[None, None].float(), size=out_hw, mode="nearest")[0, 0].long()


def run_eval(source: str, cfg: MSFormerConfig, n: int, data: Path, seed: int = 123) -> str:
    if source == "synthetic":
        from mslib.data.synthetic import make_batch

        ims, mks = make_batch("skin", n, cfg.image_size, seed=seed)
        images, masks = list(ims), list(mks)
    else:
        images, masks = load_isic(data, n)
    t0 = time.perf_counter()
    results = segment_images(images, cfg)
    secs = (time.perf_counter() - t0) / len(images)
    rows = []
    table = {}
    kmeans = [_kmeans_at(im, cfg.image_size, cfg.kmeans_k, m.shape) for im, m in zip(images, masks)]
    matched = [_kmeans_at(im, cfg.image_size, max(r.n_clusters, 1), m.shape) for im, m, r in zip(images, masks, results)]
    for name, maps in (("MS-Former", [r.labels for r in results]), (f"k-means (K={cfg.kmeans_k})", kmeans),
                       ("k-means (K = MS-Former's final count)", matched)):
        honest = [evaluate_clusters(lab, torch.from_numpy(m)) for lab, m in zip(maps, masks)]
        legacy = [evaluate_clusters(lab, torch.from_numpy(m), legacy_gt_crop_eval=True) for lab, m in zip(maps, masks)]
        mean = lambda rs, k: 100 * float(torch.cat([r[k] for r in rs]).mean())  # noqa: E731
        table[name] = [float(torch.cat([r["dsc"] for r in honest])[i]) for i in range(len(images))]
        rows.append([name, f"{mean(honest, 'dsc'):.1f}", f"{mean(honest, 'hm'):.1f}", f"{mean(honest, 'xor'):.1f}",
                     f"{mean(legacy, 'dsc'):.1f}", f"{mean(legacy, 'hm'):.1f}", f"{mean(legacy, 'xor'):.1f}"])
    wins = sum(a > b for a, b in zip(table["MS-Former"], table[f"k-means (K={cfg.kmeans_k})"]))
    its = np.mean([r.iterations for r in results])
    ncl = np.mean([r.n_clusters for r in results])
    what = f"synthetic (seed {seed})" if source == "synthetic" else source
    title = (f"{what}: {len(images)} images at {cfg.image_size} px, best-overlap cluster; MS-Former beats k-means on "
             f"{wins}/{len(images)} images; {secs:.1f} s/image, {its:.1f} SGD steps, {ncl:.1f} clusters on average")
    return print_table(rows, ["method", "DSC", "HM", "XOR", "DSC (legacy GT crop)", "HM (legacy)", "XOR (legacy)"],
                       title=title)


def run_ablation(cfg: MSFormerConfig, n: int) -> str:
    """MS-Former Table 2 on synthetic skin images (same images and seeds for every row)."""
    from mslib.data.synthetic import make_batch

    images, masks = make_batch("skin", n, cfg.image_size, seed=123)
    rows = []
    l1, l2, l3 = cfg.lambdas                # each row switches terms off from the configured weights
    rows_lam = (("CE only", (l1, 0.0, 0.0)), ("CE + inter", (l1, l2, 0.0)), ("CE + intra", (l1, 0.0, l3)))
    variants = [(f"{name} {lam}", dataclasses.replace(cfg, lambdas=lam)) for name, lam in rows_lam]
    variants += [(f"CE + inter + intra {tuple(cfg.lambdas)} (default)", cfg),
                 ("published: out_norm=False, (1, 2, 1.2), K=100, Mix-FFN x4",
                  dataclasses.replace(cfg, **MSFormerConfig.PUBLISHED))]
    for name, c in variants:
        res = segment_images(list(images), c, progress=False)
        ev = [evaluate_clusters(r.labels, torch.from_numpy(m)) for r, m in zip(res, masks)]
        mean = lambda k: 100 * float(torch.cat([e[k] for e in ev]).mean())  # noqa: E731
        rows.append([name, f"{mean('dsc'):.1f}", f"{mean('hm'):.1f}", f"{mean('xor'):.1f}",
                     f"{np.mean([r.n_clusters for r in res]):.1f}", f"{np.mean([r.iterations for r in res]):.1f}"])
    return print_table(rows, ["losses (lambda1, lambda2, lambda3)", "DSC", "HM", "XOR", "clusters", "SGD steps"],
                       title=f"Loss ablation (MS-Former Table 2 style): {n} synthetic skin images at {cfg.image_size} px, "
                             "best-overlap cluster, no GT crop")


def _time_cell(size: int, images_npy: str, overrides: dict) -> dict:
    """One timing cell, in its own process: only torch and mslib's self-supervised loop are imported
    (the images come from a ``.npy`` file written by the parent, not from the generator)."""
    cfg = dataclasses.replace(get_config("msformer", "paper"), image_size=size, **overrides)
    ims = np.load(images_npy)
    segment_images([ims[0, :32, :32]], dataclasses.replace(cfg, image_size=32, max_iters=2),
                   progress=False)                                   # warm-up of the kernels
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # imports (torch ~0.5 GB), data, warm-up
    t0 = time.perf_counter()
    res = segment_images(list(ims), cfg, progress=False)
    return {"seconds": (time.perf_counter() - t0) / len(ims), "iters": float(np.mean([r.iterations for r in res])),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "base_mb": base,
            "clusters": float(np.mean([r.n_clusters for r in res]))}


def run_time(sizes: list[int], n: int, threads: int, items: list[str]) -> str:
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
            np.save(path, np.stack([np.asarray(i) for i in ims]))            # (n, H, W, 3) uint8
            for heap, env in (("glibc default", {}),
                              ("MALLOC_MMAP_THRESHOLD_=131072", {"MALLOC_MMAP_THRESHOLD_": "131072"})):
                cmd = [sys.executable, "-m", "benchmarks.bench_selfsup", "--threads", str(threads), "--time-cell",
                       str(size), path, *sum((["--set", s] for s in items), [])]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append([size, heap, f"{r['seconds']:.2f}", f"{r['iters']:.1f}",
                             f"{r['seconds'] / max(r['iters'] + 1, 1):.3f}", f"{r['peak_mb']:.0f}",
                             f"{r['peak_mb'] - r['base_mb']:.0f}", f"{148 / r['seconds']:.1f}x"])
    return print_table(rows, ["size px", "heap", "s / image", "SGD steps", "s / step", "peak RSS MB",
                              "of which optimisation MB", "vs official 148 s"],
                       title=f"MS-Former per-image optimisation on CPU ({threads} threads), {n} synthetic skin images, "
                             "paper profile (official code at 257 px: 148 s/image, 6.2 GB peak)")


def _direct_loop(image, cfg, seed: int):
    """The per-image loop written out by hand (what ``mslib.train.selfsup`` ran before it moved onto the
    engine): the reference for :func:`run_engine_overhead`. Returns (labels, SGD steps)."""
    from mslib.losses.scale_consistency import joint_loss
    from mslib.recipes.msformer import build_model

    x = prepare_image(image, cfg.image_size, cfg.standardize)
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
    segment_image(ims[0][:32, :32], dataclasses.replace(cfg, image_size=32, max_iters=2))   # warm-up
    t = {"engine": [0.0, 0], "direct": [0.0, 0]}
    same = True
    for r in range(rounds):
        for i, im in enumerate(ims):
            order = ("engine", "direct") if (r + i) % 2 == 0 else ("direct", "engine")
            for kind in order:
                t0 = time.perf_counter()
                if kind == "engine":
                    res = segment_image(im, cfg, seed=i)
                    labels, steps = res.labels_work, res.iterations
                else:
                    labels, steps = _direct_loop(im, cfg, seed=i)
                t[kind][0] += time.perf_counter() - t0
                t[kind][1] += steps + 1                       # forward passes (the last has no update)
                if kind == "engine":
                    eng = labels
                else:
                    dirl = labels
            same &= bool(torch.equal(eng, dirl))
    per = {k: v[0] / v[1] for k, v in t.items()}
    rows = [[size, k, f"{per[k]:.4f}", t[k][1]] for k in ("direct", "engine")]
    rows.append([size, "engine / direct", f"{per['engine'] / per['direct']:.3f}", "maps identical" if same else
                 "MAPS DIFFER"])
    return print_table(rows, ["size px", "loop", "s / forward pass", "forward passes"],
                       title=f"MS-Former per-image loop on the engine vs written by hand ({n} images x {rounds} "
                             f"rounds, interleaved, {torch.get_num_threads()} threads)")


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--eval", choices=["synthetic", "isic"])
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--engine-overhead", action="store_true",
                    help="time the per-image loop on the engine against the same loop written by hand")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--profile", default="paper", choices=["quick", "paper"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 257])   # the quick and paper sizes
    ap.add_argument("--size", type=int, default=None, help="working size for --eval (default: the profile's)")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DEFAULT_ISIC)
    ap.add_argument("--seed", type=int, default=123, help="synthetic image set for --eval synthetic (123: the tuning "
                    "set of the defaults; 2024: held out)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--time-cell", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = _parse_set(args.set)
    if args.time_cell:
        print(json.dumps(_time_cell(int(args.time_cell[0]), args.time_cell[1], overrides)))
        return ""
    if args.engine_overhead:
        return run_engine_overhead(args.size or 257, args.n or 3, args.rounds)
    if args.eval:
        cfg = dataclasses.replace(get_config("msformer", args.profile), **overrides)
        if args.size:
            cfg = dataclasses.replace(cfg, image_size=args.size)
        return run_eval(args.eval, cfg, args.n or 20, args.data, args.seed)
    if args.ablation:
        cfg = dataclasses.replace(get_config("msformer", args.profile), **overrides)
        if args.size:
            cfg = dataclasses.replace(cfg, image_size=args.size)
        return run_ablation(cfg, args.n or 12)
    # --time, and the default (``make bench``): per-image speed and memory
    return run_time(args.sizes, args.n or 2, args.threads, args.set)


if __name__ == "__main__":
    main()
