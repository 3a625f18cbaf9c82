"""PDCR loss: vectorised vs a direct loop over the paper's sums vs the official loop structure; memory vs N.

    python -m benchmarks.bench_pdcr                 # batch 4, N = 64 and 32, patches 5/7/9 (official sizes)
    python -m benchmarks.bench_pdcr --device cuda
    python -m benchmarks.bench_pdcr --memory-n 64,256,1024,4096
    python -m benchmarks.bench_pdcr --step-only --step-profiles quick,paper   # training-step overhead

Three implementations of the same single-layer H-PDCR loss (Eq. 12, first line; mean reduction;
two layers as the official 2D encoder: 64 channels at stride 2 with N = 64, 128 at stride 4 with
N = 32; patch series 5, 7, 9):

* ``vectorised``: :class:`mslib.losses.dragsaw.PatchDragsawLoss` (one summed-area table, gathers,
  N x N matrices, no host sync);
* ``direct loop``: every sum of Eq. 4, 3, 8 and 12 a Python loop over images, patch sizes,
  vectors i, j and n (:func:`direct_loop_loss`);
* ``official loop``: the official code's structure re-expressed: the ratios filled by a loop
  over images x patch sizes x samples with one host sync (``.item()``) per element, then the
  loss as matrices (:func:`official_loop_loss`).

All three are timed in one run and must agree to 1e-5. Then the memory of the vectorised loss
(forward + backward) as N grows: it keeps a few (B, K, N, N) float32 tensors per layer.

Training-step overhead (``--step-profiles``): one optimiser step (forward, CE + PDCR of
:func:`mslib.recipes.pdcr.pdcr_step`, backward, Adam) of each network of the recipe with PDCR +
UAFR at their default layers against the bare network, both built by
:func:`mslib.recipes.pdcr.build_pdcr_net` from the same config; the two are timed interleaved
(bare, plugged, bare, plugged, ...) so that load on the machine hits both alike, and the table
gives the median ratio (goal <= 1.3x). ``quick``: the chapter's networks (UNet w8 d3, FCN and
DeepLabV3+ on ResNet-18) at 64 px, batch 8; ``paper``: the paper's networks (UNet w64 d4, FCN and
DeepLabV3+ on ResNet-50) at 512 x 384 (Table IV), batch ``--paper-batch``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from benchmarks.common import print_table
from mslib.losses.dragsaw import PatchDragsawLoss
from mslib.losses.patch_affinity import feature_centres, grid_positions

__all__ = ["direct_loop_loss", "official_loop_loss", "make_inputs", "main"]


def make_inputs(batch: int = 4, size: int = 128, device: str = "cpu", seed: int = 0):
    """Official-like encoder features (64 ch at stride 2, 128 ch at stride 4) and a blob mask."""
    g = torch.Generator().manual_seed(seed)
    feats = [
        torch.randn(batch, 64, size // 2, size // 2, generator=g),
        torch.randn(batch, 128, size // 4, size // 4, generator=g),
    ]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for _ in range(batch):
        lo, span = torch.tensor([size / 4, size / 4, size / 8]), torch.tensor([size / 2, size / 2, size / 4])
        cy, cx, r = (torch.rand(3, generator=g) * span + lo).tolist()
        masks.append(((yy - cy) ** 2 / r**2 + (xx - cx) ** 2 / (0.6 * r) ** 2 <= 1).long())
    return [f.to(device).requires_grad_() for f in feats], torch.stack(masks).to(device)


def _ratio_direct(mask_b: torch.Tensor, cy: int, cx: int, k: int, m: int) -> torch.Tensor:
    """Eq. 4 for one patch and one class: pixels of class m in the k x k patch / k^2 (padding counted)."""
    H, W = mask_b.shape
    r0, c0 = cy - k // 2, cx - k // 2
    patch = mask_b[max(r0, 0) : min(r0 + k, H), max(c0, 0) : min(c0 + k, W)]
    return (patch == m).sum() / (k * k)


def direct_loop_loss(
    features, mask, num_vectors=(64, 32), patch_sizes=(5, 7, 9), tau: float = 1.0, num_classes: int = 2
) -> torch.Tensor:
    """Eq. 12 (single-layer terms, each the mean over images, patch sizes, i, j), every sum a Python loop."""
    B, H, W = mask.shape
    total = 0.0
    for layer, f in enumerate(features):
        f = f.double()  # float64 so that 60,000 summed terms keep 1e-5 accuracy
        h, w = f.shape[-2:]
        rows, cols = grid_positions(h, w, num_vectors[layer])
        cys, cxs = feature_centres(rows, cols, (h, w), (H, W))
        N, K = len(rows), len(patch_sizes)
        acc = 0.0
        for b in range(B):
            v = [f[b, :, int(rows[i]), int(cols[i])] for i in range(N)]
            s = [[torch.dot(v[i], v[j]) / (v[i].norm() * v[j].norm()) for j in range(N)] for i in range(N)]  # Eq. 10
            for k in patch_sizes:
                phi = [
                    [_ratio_direct(mask[b], int(cys[i]), int(cxs[i]), k, m) for m in range(num_classes)]
                    for i in range(N)
                ]  # Eq. 4
                wgt = [
                    [1 - sum(abs(phi[i][m] - phi[j][m]) for m in range(num_classes)) / num_classes for j in range(N)]
                    for i in range(N)
                ]  # Eq. 3
                for i in range(N):
                    den = sum(torch.exp(s[i][n] * (1 - wgt[i][n]) / tau) for n in range(N))
                    for j in range(N):
                        acc = acc - torch.log(torch.exp(s[i][j] * wgt[i][j] / tau) / den)  # Eq. 12
        total = total + acc / (B * K * N * N)
    return total


def official_loop_loss(features, mask, num_vectors=(64, 32), patch_sizes=(5, 7, 9), tau: float = 1.0) -> torch.Tensor:
    """The official structure: ratios by a loop with one host sync per (image, patch size, sample), loss as matrices.

    Binary masks only (as the official 2D code): the foreground count of each window is read
    with ``.item()``; the background ratio follows on the host from the window's in-image area.
    """
    B, H, W = mask.shape
    dev = mask.device
    total = 0.0
    for layer, f in enumerate(features):
        h, w = f.shape[-2:]
        rows, cols = grid_positions(h, w, num_vectors[layer])
        cys, cxs = feature_centres(rows, cols, (h, w), (H, W))
        N, K = len(rows), len(patch_sizes)
        phi = torch.empty(B, K, N, 2)
        for b in range(B):
            for ki, k in enumerate(patch_sizes):
                for i in range(N):
                    r0, c0 = int(cys[i]) - k // 2, int(cxs[i]) - k // 2
                    rs, re, cs, ce = max(r0, 0), min(r0 + k, H), max(c0, 0), min(c0 + k, W)
                    fg = mask[b, rs:re, cs:ce].sum().item()  # one host sync per element
                    phi[b, ki, i, 1] = fg / (k * k)
                    phi[b, ki, i, 0] = ((re - rs) * (ce - cs) - fg) / (k * k)
        phi = phi.to(dev)
        v = torch.nn.functional.normalize(f[:, :, rows.to(dev), cols.to(dev)].transpose(1, 2), dim=-1)
        s = (v @ v.transpose(1, 2))[:, None] / tau
        wgt = 1 - (phi[:, :, :, None] - phi[:, :, None, :]).abs().mean(-1)
        total = total + (torch.logsumexp(s * (1 - wgt), -1, keepdim=True) - s * wgt).mean()
    return total


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def speed_table(batch: int, size: int, device: str, repeat: int, loop: bool = True) -> tuple[str, dict]:
    feats, mask = make_inputs(batch, size, device)
    loss = PatchDragsawLoss(num_vectors=(64, 32), patch_sizes=(5, 7, 9))
    vec = lambda: loss(feats, mask)  # noqa: E731
    vec()  # warm-up
    t_vec = _time(vec, device, repeat)
    v_val = float(vec().detach())
    rows = [["vectorised (mslib)", f"{t_vec * 1e3:.2f}", "1", f"{v_val:.6f}", "0"]]
    out = {"vectorised_s": t_vec, "value": v_val}
    impls = [("official loop (1 host sync / element)", official_loop_loss, max(1, repeat // 5))]
    if loop:
        impls.append(("direct loop (Eq. 3, 4, 10, 12 as loops)", direct_loop_loss, 1))
    for name, fn, rep in impls:
        t = _time(lambda fn=fn: fn(feats, mask), device, rep)
        val = float(fn(feats, mask).detach())
        rows.append([name, f"{t * 1e3:.1f}", f"{t / t_vec:.0f}x", f"{val:.6f}", f"{abs(val - v_val):.1e}"])
        out[name.split(" (")[0].replace(" ", "_") + "_s"] = t
        out[name.split(" (")[0].replace(" ", "_") + "_diff"] = abs(val - v_val)
    table = print_table(
        rows,
        ["implementation", "ms / call", "vectorised is faster by", "loss", "|diff|"],
        title=f"PDCR loss forward, batch {batch}, {size}x{size} mask, N = 64 and 32, k = 5, 7, 9, {device}",
    )
    return table, out


def _saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except Exception:
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.backward()
    return sum(seen.values())


def memory_table(ns: list[int], batch: int, device: str, k: int = 3) -> str:
    rows = []
    for n in ns:
        side = max(8, math.ceil(math.sqrt(n)))
        f = torch.randn(batch, 64, side, side, device=device, requires_grad=True)
        mask = (torch.rand(batch, 2 * side, 2 * side, device=device) > 0.5).long()
        loss = PatchDragsawLoss(num_vectors=n, patch_sizes=(5, 7, 9)[:k])
        one = 4 * batch * k * n * n
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            try:
                loss([f], mask).backward()
                _sync(device)
                peak = torch.cuda.max_memory_allocated() - base
                measured = f"{peak / 2**20:.1f} MiB peak (cuda)"
            except torch.OutOfMemoryError:
                measured = "out of memory"
                peak = float("nan")
        else:
            peak = _saved_bytes(lambda loss=loss, f=f, mask=mask: loss([f], mask))
            measured = f"{peak / 2**20:.1f} MiB saved for backward"
        rows.append([n, f"{one / 2**20:.2f}", measured, f"{peak / one:.1f}" if peak == peak else "-"])
    text = print_table(
        rows,
        ["N", "one (B, K, N, N) fp32 tensor, MiB", "measured", "measured / one tensor"],
        title=f"PDCR loss memory (one layer, batch {batch}, K = {k} patch sizes, fwd + bwd, {device})",
    )
    per = rows[-1][3]
    try:
        factor = float(per)
        limit = {"80 GiB": 80 * 2**30, "24 GiB": 24 * 2**30, "16 GiB": 16 * 2**30}
        fits = ", ".join(f"{name}: N <= {int(math.sqrt(b / (factor * 4 * batch * k)))}" for name, b in limit.items())
        print(f"\nN^2 scaling: about {factor:.0f} (B, K, N, N) fp32 tensors live per layer; it stops fitting at {fits}")
    except ValueError:
        pass
    return text


STEP_PROFILES = {
    "quick": dict(
        size=(64, 64),
        batch=8,
        kw={
            "unet": dict(base_channels=8, depth=3),
            "fcn": dict(backbone="resnet18"),
            "deeplabv3plus": dict(backbone="resnet18"),
        },
        pdcr=dict(num_vectors=(16, 8), decoder_num_vectors=(16, 8)),
    ),
    "paper": dict(
        size=(384, 512),
        batch=1,
        kw={
            "unet": dict(base_channels=64, depth=4),
            "fcn": dict(backbone="resnet50"),
            "deeplabv3plus": dict(backbone="resnet50"),
        },
        pdcr={},
    ),
}


def step_table(
    profiles: list[str], networks: list[str], device: str, repeat: int, paper_batch: int = 2, threads: int | None = None
) -> tuple[str, list[dict]]:
    """Median training-step time of bare vs PDCR + UAFR networks, interleaved; one row per (profile, network)."""
    import dataclasses

    from mslib.configs import get_config
    from mslib.recipes.pdcr import build_pdcr_net, pdcr_step

    rows, out = [], []
    for prof in profiles:
        spec = STEP_PROFILES[prof]
        for net_name in networks:
            batch = paper_batch if prof == "paper" else spec["batch"]
            if net_name == "deeplabv3plus":
                batch = max(batch, 2)  # ASPP's image-pooling batch norm cannot train on one image
            base = dataclasses.replace(
                get_config("pdcr", "paper"), network=net_name, pretrained=False, **spec["kw"][net_name], **spec["pdcr"]
            )
            variants = {
                "bare": dataclasses.replace(base, pdcr="none", uafr=False),
                "pdcr": dataclasses.replace(base, uafr=False),
                "uafr": dataclasses.replace(base, pdcr="none"),
                "pdcr+uafr": base,
            }
            g = torch.Generator().manual_seed(0)
            x = torch.randn(batch, 3, *spec["size"], generator=g).to(device)
            y = (torch.rand(batch, *spec["size"], generator=g) > 0.6).long().to(device)
            steps = {}
            for name, cfg in variants.items():
                torch.manual_seed(0)
                model = build_pdcr_net(cfg, 3, 2).to(device).train()
                opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)

                class Ctx:
                    pass

                ctx = Ctx()
                ctx.model, ctx.models = model, {"model": model}
                ctx.loss_fn = lambda lg, m: torch.nn.functional.cross_entropy(lg.float(), m)

                def step(model=model, opt=opt, ctx=ctx, x=x, y=y):
                    opt.zero_grad(set_to_none=True)
                    loss, _ = pdcr_step(ctx, (x, y))
                    loss.backward()
                    opt.step()

                step()  # warm-up
                steps[name] = step
            times = {k: [] for k in steps}
            for r in range(repeat):
                order = list(steps) if r % 2 == 0 else list(steps)[::-1]  # interleaved, alternating order
                for k in order:
                    _sync(device)
                    t0 = time.perf_counter()
                    steps[k]()
                    _sync(device)
                    times[k].append(time.perf_counter() - t0)
            med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            ratios = sorted(p / b for p, b in zip(times["pdcr+uafr"], times["bare"]))
            ratio = med["pdcr+uafr"] / med["bare"]
            h, w = spec["size"]
            label = {
                "unet": f"UNet w{spec['kw']['unet']['base_channels']}",
                "fcn": f"FCN-{spec['kw']['fcn']['backbone'].replace('resnet', 'R')}",
                "deeplabv3plus": f"DeepLabV3+-{spec['kw']['deeplabv3plus']['backbone'].replace('resnet', 'R')}",
            }
            rows.append(
                [
                    prof,
                    label[net_name],
                    f"{batch} x {w}x{h}",
                    f"{med['bare'] * 1e3:.0f}",
                    f"{med['pdcr'] / med['bare']:.2f}x",
                    f"{med['uafr'] / med['bare']:.2f}x",
                    f"{med['pdcr+uafr'] * 1e3:.0f}",
                    f"{ratio:.2f}x",
                    f"{ratios[0]:.2f}-{ratios[-1]:.2f}",
                    "yes" if ratio <= 1.3 else "no",
                ]
            )
            print("row:", " | ".join(map(str, rows[-1])), flush=True)
            out.append(
                {
                    "profile": prof,
                    "network": net_name,
                    "bare_s": med["bare"],
                    "plugged_s": med["pdcr+uafr"],
                    "ratio": ratio,
                    "pdcr_ratio": med["pdcr"] / med["bare"],
                    "uafr_ratio": med["uafr"] / med["bare"],
                }
            )
    thr = f", {threads or torch.get_num_threads()} thread(s)" if device == "cpu" else ""
    table = print_table(
        rows,
        [
            "profile",
            "network",
            "batch x W x H",
            "bare ms/step",
            "PDCR only",
            "UAFR only",
            "PDCR+UAFR ms/step",
            "PDCR+UAFR ratio",
            "paired ratios min-max",
            "<= 1.3x",
        ],
        title=f"Training step (forward, CE + PDCR, backward, Adam): PDCR + UAFR vs the bare network, "
        f"{device}{thr}, median of {repeat} interleaved steps",
    )
    return table, out


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="mask side (features at stride 2 and 4)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--no-loop", action="store_true", help="skip the (slow) direct loop")
    p.add_argument("--memory-n", default="64,128,256,512,1024,2048")
    p.add_argument("--memory-batch", type=int, default=4)
    p.add_argument(
        "--step-profiles",
        default="",
        help="training-step overhead: comma list of quick,paper (default: none; --step-only alone runs quick)",
    )
    p.add_argument("--step-networks", default="unet,fcn,deeplabv3plus")
    p.add_argument("--step-repeat", type=int, default=7)
    p.add_argument("--paper-batch", type=int, default=2, help="batch of the paper-size step (paper: 4 per GPU)")
    p.add_argument("--step-only", action="store_true", help="only the training-step table")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    parts = []
    if not a.step_only:
        table, _ = speed_table(a.batch, a.size, a.device, a.repeat, loop=not a.no_loop)
        parts.append(table)
        if a.memory_n:
            parts.append(memory_table([int(n) for n in a.memory_n.split(",") if n], a.memory_batch, a.device))
    if a.step_only and not a.step_profiles:
        a.step_profiles = "quick"
    if a.step_profiles:
        table, _ = step_table(
            [s for s in a.step_profiles.split(",") if s],
            a.step_networks.split(","),
            a.device,
            a.step_repeat,
            a.paper_batch,
        )
        parts.append(table)
    return "\n".join(parts)


if __name__ == "__main__":
    main()
