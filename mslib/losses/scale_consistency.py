"""MS-Former losses: cross-entropy on the argmax pseudo-label, inter- and intra-scale consistency.

* :func:`pseudo_label_ce` -- MS-Former Eq. 4, cross-entropy between the soft prediction map
  ``S`` and its own argmax ``Y`` (Kim-Kanezaki style self-training).
* :func:`inter_scale_loss` -- MS-Former Eq. 5-6, ``1 - cos(G^s, G^l)`` between the global
  contexts of the small- and large-patch branches, over whole ``d x d`` matrices (paper).
  ``mode="rowwise", blocks="last"`` is the official code (mean of row cosines of the last
  block only).
* :func:`correlation_matrix`, :func:`intra_scale_loss` -- MS-Former Eq. 8-9: the correlation
  matrix ``rho(A1, A2)`` of the intra-scale tokens ``A = MSA(BN(z))`` (Eq. 7, built by the block
  :class:`mslib.blocks.intra_scale.IntraScaleTokens` inside the model) and its L1 distance to
  the identity.
* :func:`joint_loss` -- MS-Former Eq. 10, ``l1 L_ce + l2 L_inter + l3 L_intra``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Old import path of two Eq. 7 helpers that moved to mslib.blocks.intra_scale (chapter 8 imports
# them from here); not part of this module's __all__.
from mslib.blocks.intra_scale import IntraScaleTokens, shifted_pairs  # noqa: F401

__all__ = [
    "DEFAULT_LAMBDAS",
    "pseudo_label_ce",
    "inter_scale_loss",
    "correlation_matrix",
    "intra_scale_loss",
    "joint_loss",
]

#: (lambda1, lambda2, lambda3) of MS-Former Eq. 10, the same as ``MSFormerConfig.lambdas`` (one
#: set of defaults: ``joint_loss(out)`` optimises what ``segment_image`` does). The paper gives
#: (1, 2, 1.2) as the result of its grid search (Appendix A) and (1, 5, 1.2) at the end of
#: Appendix A; the official notebook uses (1, 2.0, 1.2) and (1, 1.5, 1.3). The defaults keep the
#: paper's lambda1 and lambda2 and a smaller intra-scale weight, lambda3 = 0.6, chosen on synthetic
#: dermoscopy with lesions of 5-80 % of the image and on real crops (``MSFormerConfig.PUBLISHED`` has
#: 1.2); chapter 9b and the Benchmarks page show every value tried and what each costs.
DEFAULT_LAMBDAS = (1.0, 2.0, 0.6)


def pseudo_label_ce(logits: torch.Tensor) -> torch.Tensor:
    """MS-Former Eq. 4: cross-entropy of ``softmax(logits)`` against its own argmax.

    ``logits`` is ``(B, K, H, W)``; the target ``Y = argmax_k S`` is detached (a label, not a
    function of the weights), the mean runs over the ``H x W`` pixels (and the batch).
    """
    if logits.dim() != 4:
        raise ValueError(f"pseudo_label_ce expects logits (B, K, H, W), got {tuple(logits.shape)}")
    target = logits.detach().argmax(dim=1)
    return F.cross_entropy(logits, target)


def _as_list(contexts) -> list[torch.Tensor]:
    if isinstance(contexts, torch.Tensor):
        return [contexts]
    contexts = list(contexts)
    if not contexts:
        raise ValueError("inter_scale_loss: empty list of contexts")
    return contexts


def inter_scale_loss(
    contexts_small: torch.Tensor | Sequence[torch.Tensor],
    contexts_large: torch.Tensor | Sequence[torch.Tensor],
    mode: str = "matrix",
    blocks: str = "all",
    eps: float = 1e-8,
) -> torch.Tensor:
    """Inter-scale consistency, MS-Former Eq. 5-6: ``L_inter = 1 - cos(G^s, G^l)``.

    Each argument is one context ``(..., d_k, d_v)`` or a list with one per block (block ``b``
    of the small branch is paired with block ``b`` of the large branch).

    * ``mode="matrix"`` (paper, Eq. 5): the cosine of the two whole matrices, i.e. the
      Frobenius inner product over the product of Frobenius norms (one cosine per head and
      image; Eq. 5 writes ``G^l_ji`` in its middle line, a transposition typo of the first
      line's inner product).
    * ``mode="rowwise"`` (official code, ``CosineEmbeddingLoss`` with target 1): the mean over
      rows of ``1 - cos(row^s, row^l)``.
    * ``blocks="all"`` averages over the block pairs; ``blocks="last"`` (official) uses the
      last block of each branch only.

    The result is the mean over blocks, heads and images: 0 for identical contexts, 1 for
    orthogonal ones, 2 for opposite ones.
    """
    if mode not in ("matrix", "rowwise"):
        raise ValueError(f"inter_scale_loss: mode must be 'matrix' (paper) or 'rowwise' (official), got {mode!r}")
    if blocks not in ("all", "last"):
        raise ValueError(f"inter_scale_loss: blocks must be 'all' or 'last', got {blocks!r}")
    gs, gl = _as_list(contexts_small), _as_list(contexts_large)
    if len(gs) != len(gl):
        raise ValueError(f"inter_scale_loss: {len(gs)} small-branch contexts but {len(gl)} large-branch ones")
    if blocks == "last":
        gs, gl = gs[-1:], gl[-1:]
    losses = []
    for a, b in zip(gs, gl):
        if a.shape != b.shape:
            raise ValueError(f"inter_scale_loss: context shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
        if mode == "matrix":
            cos = F.cosine_similarity(a.flatten(-2), b.flatten(-2), dim=-1, eps=eps)
        else:
            cos = F.cosine_similarity(a, b, dim=-1, eps=eps)
        losses.append((1 - cos).mean())
    return torch.stack(losses).mean()


def correlation_matrix(a1: torch.Tensor, a2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MS-Former Eq. 8: Pearson correlation ``rho_ij`` between token ``i`` of ``A1`` and token ``j`` of ``A2``.

    ``a1``, ``a2`` are ``(..., n, d)``; the expectation runs over the ``d`` features. Returns
    ``(..., n, n)`` with entries in [-1, 1].
    """
    if a1.shape != a2.shape:
        raise ValueError(f"correlation_matrix: A1 {tuple(a1.shape)} and A2 {tuple(a2.shape)} must have the same shape")
    c1 = a1 - a1.mean(dim=-1, keepdim=True)
    c2 = a2 - a2.mean(dim=-1, keepdim=True)
    c1 = c1 / (c1.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    c2 = c2 / (c2.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    return c1 @ c2.transpose(-2, -1) / a1.shape[-1]


def intra_scale_loss(rho: torch.Tensor | Sequence[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """MS-Former Eq. 9: L1 distance between the correlation matrix ``rho`` (``(..., n, n)``) and ``I``.

    ``reduction="sum"`` is Eq. 9 as written (a sum over the ``n x n`` entries, averaged over
    images); ``"mean"`` (default, as the official code) divides by ``n**2`` so that the
    weight lambda3 does not depend on the number of tokens. A list of matrices (one per
    shifted pair) gives the mean of their losses.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"intra_scale_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    mats = [rho] if isinstance(rho, torch.Tensor) else list(rho)
    losses = []
    for r in mats:
        n = r.shape[-1]
        if r.shape[-2] != n:
            raise ValueError(f"intra_scale_loss: rho must be square, got {tuple(r.shape)}")
        d = (r - torch.eye(n, dtype=r.dtype, device=r.device)).abs()
        d = d.mean(dim=(-2, -1)) if reduction == "mean" else d.sum(dim=(-2, -1))
        losses.append(d.mean())
    return torch.stack(losses).mean()


def joint_loss(
    out,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    inter_mode: str = "matrix",
    inter_blocks: str = "all",
    intra_reduction: str = "mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """MS-Former Eq. 10: ``l1 L_ce + l2 L_inter + l3 L_intra`` on an :class:`~mslib.models.msformer.MSFormerOutput`.

    Returns ``(loss, parts)`` with ``parts`` the detached float value of each term (and the
    correlation matrices are not kept; use :func:`correlation_matrix` on ``out.tokens`` for
    plots). A zero weight skips its term entirely (no cost).
    """
    if len(lambdas) != 3:
        raise ValueError(f"joint_loss: lambdas must be (lambda1, lambda2, lambda3), got {lambdas!r}")
    l1, l2, l3 = (float(v) for v in lambdas)
    zero = out.logits.new_zeros(())
    ce = pseudo_label_ce(out.logits) if l1 else zero
    inter = inter_scale_loss(out.contexts_small, out.contexts_large, inter_mode, inter_blocks) if l2 else zero
    if l3 and out.tokens is None:
        raise ValueError("joint_loss: lambda3 > 0 needs intra-scale tokens; the model returned tokens=None")
    intra = intra_scale_loss([correlation_matrix(a, b) for a, b in out.tokens], intra_reduction) if l3 else zero
    total = l1 * ce + l2 * inter + l3 * intra
    return total, {k: float(v.detach()) for k, v in (("ce", ce), ("inter", inter), ("intra", intra), ("total", total))}
