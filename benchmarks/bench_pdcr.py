"""PDCR loss: vectorised vs a direct loop over the paper's sums vs the official loop structure; memory vs N.

    python -m benchmarks.bench_pdcr                 # batch 4, N = 64 and 32, patches 5/7/9 (official sizes)
    python -m benchmarks.bench_pdcr --device cuda
    python -m benchmarks.bench_pdcr --memory-n 64,256,1024,4096

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
    feats = [torch.randn(batch, 64, size // 2, size // 2, generator=g),
             torch.randn(batch, 128, size // 4, size // 4, generator=g)]
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
    patch = mask_b[max(r0, 0):min(r0 + k, H), max(c0, 0):min(c0 + k, W)]
    return (patch == m).sum() / (k * k)


def direct_loop_loss(features, mask, num_vectors=(64, 32), patch_sizes=(5, 7, 9), tau: float = 1.0,
                     num_classes: int = 2) -> torch.Tensor:
    """Eq. 12 (single-layer terms, each the mean over images, patch sizes, i, j), every sum a Python loop."""
    B, H, W = mask.shape
    total = 0.0
    for layer, f in enumerate(features):
        f = f.double()                     # float64 so that 60,000 summed terms keep 1e-5 accuracy
        h, w = f.shape[-2:]
        rows, cols = grid_positions(h, w, num_vectors[layer])
        cys, cxs = feature_centres(rows, cols, (h, w), (H, W))
        N, K = len(rows), len(patch_sizes)
        acc = 0.0
        for b in range(B):
            v = [f[b, :, int(rows[i]), int(cols[i])] for i in range(N)]
            s = [[torch.dot(v[i], v[j]) / (v[i].norm() * v[j].norm()) for j in range(N)] for i in range(N)]   # Eq. 10
            for k in patch_sizes:
                phi = [[_ratio_direct(mask[b], int(cys[i]), int(cxs[i]), k, m) for m in range(num_classes)]
                       for i in range(N)]                                                                    # Eq. 4
                wgt = [[1 - sum(abs(phi[i][m] - phi[j][m]) for m in range(num_classes)) / num_classes
                        for j in range(N)] for i in range(N)]                                                # Eq. 3
                for i in range(N):
                    den = sum(torch.exp(s[i][n] * (1 - wgt[i][n]) / tau) for n in range(N))
                    for j in range(N):
                        acc = acc - torch.log(torch.exp(s[i][j] * wgt[i][j] / tau) / den)                    # Eq. 12
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
                    fg = mask[b, rs:re, cs:ce].sum().item()                      # one host sync per element
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
    vec = lambda: loss(feats, mask)                                   # noqa: E731
    vec()                                                             # warm-up
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
    table = print_table(rows, ["implementation", "ms / call", "vectorised is faster by", "loss", "|diff|"],
                        title=f"PDCR loss forward, batch {batch}, {size}x{size} mask, N = 64 and 32, "
                              f"k = 5, 7, 9, {device}")
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
    text = print_table(rows, ["N", "one (B, K, N, N) fp32 tensor, MiB", "measured", "measured / one tensor"],
                       title=f"PDCR loss memory (one layer, batch {batch}, K = {k} patch sizes, fwd + bwd, {device})")
    per = rows[-1][3]
    try:
        factor = float(per)
        limit = {"80 GiB": 80 * 2**30, "24 GiB": 24 * 2**30, "16 GiB": 16 * 2**30}
        fits = ", ".join(f"{name}: N <= {int(math.sqrt(b / (factor * 4 * batch * k)))}" for name, b in limit.items())
        print(f"\nN^2 scaling: about {factor:.0f} (B, K, N, N) fp32 tensors live per layer; it stops fitting at {fits}")
    except ValueError:
        pass
    return text


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="mask side (features at stride 2 and 4)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--no-loop", action="store_true", help="skip the (slow) direct loop")
    p.add_argument("--memory-n", default="64,128,256,512,1024,2048")
    p.add_argument("--memory-batch", type=int, default=4)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    table, _ = speed_table(a.batch, a.size, a.device, a.repeat, loop=not a.no_loop)
    mem = memory_table([int(n) for n in a.memory_n.split(",") if n], a.memory_batch, a.device) if a.memory_n else ""
    return table + "\n" + mem


if __name__ == "__main__":
    main()
