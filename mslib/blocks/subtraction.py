"""Subtraction units of MSNet / M2SNet: SU (M2SNet Eq. 1), MSU (Eq. 2) and the ablation units.

Every unit fuses a deeper feature ``F_A`` with a shallower one ``F_B`` (both ``C`` channels,
ReLU-activated). ``F_A`` is first upsampled bilinearly to ``F_B``'s size (``align_corners=False``).
``Conv(.)`` is a 3x3 convolution + BatchNorm + ReLU (``C -> C``), the same in every unit.

* :class:`SubtractionUnit` (Eq. 1): ``SU = Conv(|F_A - F_B|)``.
* :class:`MultiScaleSubtractionUnit` (Eq. 2):
  ``MSU = Conv(sum_{n in {1,3,5}} |Filter_n(F_A) - Filter_n(F_B)|)`` with fixed all-ones
  ("full one") ``n x n`` filters. No weights at all are stored for the filters, so the MSU has
  exactly the learnable parameters of the SU and follows ``.to()`` for free.
* :class:`AdditionUnit` (Table VII, "SU -> AU"): ``Conv(F_A + F_B)``.
* :class:`AsppSubtractionUnit`, :class:`DenseAsppSubtractionUnit` (Fig. 7, Table VIII): the
  fixed filters replaced by learnable ASPP / DenseASPP branches.

Two readings of "full one filter"
---------------------------------
``mode="dense"`` (default): a full convolution ``C -> C`` whose ``(C, C, k, k)`` weight is all ones,
the literal meaning of an ``n x n`` convolution filter with one weights and what the official code
uses for 3x3 and 5x5. Every output channel is then the same map, the k x k box sum of the
channel sum, so by the box-filter identity

    Filter_k(x) = k^2 * avg_pool_k( sum_c x_c )        (zero padding, padding counted)

computed on one channel and broadcast to ``C``: no dense ``C x C`` convolution is ever paid for.
``mode="depthwise"``: one all-ones ``k x k`` filter per channel (``k^2 * avg_pool_k`` per channel),
the reading that keeps channel identity. For ``k = 1`` it is the identity.

What the paper implies: it calls the 1x1 term the "pixel-pixel" difference and presents the MSU
as the SU made multi-scale, i.e. the 1x1 term should be SU's ``|F_A - F_B|``. A dense all-ones
1x1 filter would instead collapse the 1x1 term to the channel-sum difference and the MSU would no
longer contain the SU. The official code uses the dense reading for 3x3 and 5x5 and the identity
for the 1x1 scale; that is our default (``identity_1x1=True``); ``identity_1x1=False`` gives the
strictly literal dense 1x1 (channel sum). The official code also puts a *learnable* BatchNorm +
ReLU after each fixed filter (+256 parameters for its two shared filters); the paper says the MSU
adds no parameters, so we have none. Without that BN the raw sums set the balance of Eq. 2: the
dense 5x5 term is up to 25 C = 1600 times larger than the 1x1 term, which then hardly counts.
``normalize=True`` is the parameter-free remedy: box *means* (divided by ``k^2 C``, resp. ``k^2``), each
term on the scale of its inputs. The default stays the literal "full one" sums; chapter 4
(book/04_multiscale_subtraction.ipynb) trains both and compares them with the SU.

Because the filters are linear, ``Filter(F_A) - Filter(F_B) = Filter(F_A - F_B)``: the MSU filters the
difference once (``impl="box"``). ``impl="conv"`` computes Eq. 2 literally with dense all-ones
``F.conv2d`` on both operands (the official cost) and serves as the reference in tests and
benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

__all__ = [
    "ConvBNReLU",
    "box_filter",
    "all_ones_conv2d",
    "upsample_to",
    "SubtractionUnit",
    "MultiScaleSubtractionUnit",
    "AdditionUnit",
    "AsppSubtractionUnit",
    "DenseAsppSubtractionUnit",
    "UNITS",
    "make_unit",
]

MODES = ("dense", "depthwise")


class ConvBNReLU(Conv2dNormActivation):
    """``Conv(.)`` of M2SNet Eq. 1-3: ``k x k`` convolution + BN + ReLU, torchvision's
    :class:`~torchvision.ops.Conv2dNormActivation` with ``padding = dilation (k - 1) / 2`` and the
    convolution's bias on by default (as in the official parameter count; torchvision drops it
    before a BN). Layers and state-dict keys (``0.weight``, ``1.running_mean``, ...) are those of
    ``nn.Sequential(Conv2d, BatchNorm2d, ReLU)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1, bias: bool = True):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            dilation=dilation,
            bias=bias,
            norm_layer=nn.BatchNorm2d,
            activation_layer=nn.ReLU,
            inplace=True,
        )


def _check_kernel(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be an odd positive int (1, 3, 5, ...), got {k!r}")
    return k


def box_filter(x: torch.Tensor, k: int, mode: str = "dense", normalize: bool = False) -> torch.Tensor:
    """Convolution of ``x`` (B, C, H, W) with a fixed all-ones ``k x k`` filter, zero padding ``k // 2``.

    ``mode="dense"``: all-ones ``(C, C, k, k)`` weight, computed as ``k^2 * avg_pool_k(sum_c x)``
    (``count_include_pad=True``); returns one channel ``(B, 1, H, W)`` that broadcasts to ``C``.
    ``mode="depthwise"``: all-ones ``(C, 1, k, k)`` weight, ``k^2 * avg_pool_k(x)``; returns ``(B, C, H, W)``.
    ``normalize=True`` returns the box mean instead of the sum (divided by ``k^2 C`` resp. ``k^2``).
    """
    _check_kernel(k)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"box_filter expects (B, C, H, W), got shape {tuple(x.shape)}")
    channels = x.shape[1]
    if mode == "dense":
        x = x.sum(dim=1, keepdim=True)
    if k > 1:
        x = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)
        if not normalize:
            x = x * (k * k)
    if normalize and mode == "dense":
        x = x / channels
    return x


def all_ones_conv2d(x: torch.Tensor, k: int, mode: str = "dense") -> torch.Tensor:
    """Reference for :func:`box_filter`: a real ``F.conv2d`` with an all-ones weight (dense: C*C*k*k MACs/pixel)."""
    _check_kernel(k)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    c = x.shape[1]
    if mode == "dense":
        w = torch.ones(c, c, k, k, dtype=x.dtype, device=x.device)
        return F.conv2d(x, w, padding=k // 2)
    w = torch.ones(c, 1, k, k, dtype=x.dtype, device=x.device)
    return F.conv2d(x, w, padding=k // 2, groups=c)


def upsample_to(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` resized bilinearly to ``b``'s spatial size (no-op if it already matches)."""
    if a.shape[-2:] == b.shape[-2:]:
        return a
    return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)


class _Unit(nn.Module):
    """Shared plumbing: checks, upsampling of the deeper operand, the output ``Conv``."""

    def __init__(self, channels: int):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.conv = ConvBNReLU(channels, channels)

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        """``f_a``: deeper feature (upsampled to ``f_b``), ``f_b``: shallower feature; both (B, C, *, *)."""
        for name, t in (("f_a", f_a), ("f_b", f_b)):
            if t.ndim != 4 or t.shape[1] != self.channels:
                raise ValueError(
                    f"{type(self).__name__}: {name} must be (B, {self.channels}, H, W), got {tuple(t.shape)}"
                )
        return self.conv(self.combine(upsample_to(f_a, f_b), f_b))


class SubtractionUnit(_Unit):
    """SU, M2SNet Eq. 1: ``Conv(|F_A - F_B|)`` (MSNet's unit)."""

    def combine(self, a, b):
        return (a - b).abs()


class AdditionUnit(_Unit):
    """AU, the "SU -> AU" row of M2SNet Table VII: ``Conv(F_A + F_B)`` (same parameters as the SU)."""

    def combine(self, a, b):
        return a + b


class MultiScaleSubtractionUnit(_Unit):
    """MSU, M2SNet Eq. 2: ``Conv(sum_k |Filter_k(F_A) - Filter_k(F_B)|)``, fixed all-ones filters, k in
    ``kernel_sizes``.

    Args:
        channels: ``C`` of both operands.
        kernel_sizes: the filter sizes (paper: 1, 3, 5).
        mode: ``"dense"`` (all-ones C->C filter; default, official for 3x3/5x5) or ``"depthwise"``
            (per-channel all-ones filter). See the module docstring.
        identity_1x1: the 1x1 term is ``|F_A - F_B|`` (official; = SU's term). ``False`` with
            ``mode="dense"`` makes it the literal all-ones 1x1 (channel-sum) filter.
        normalize: box means instead of box sums (no parameters either way).
        impl: ``"box"`` (box-filter identity on ``F_A - F_B``) or ``"conv"`` (literal Eq. 2 with
            dense all-ones ``F.conv2d`` on each operand; reference and benchmark only).

    The unit holds no filter weights: ``sum(p.numel() for p in msu.parameters())`` equals the SU's.
    """

    def __init__(
        self,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        mode: str = "dense",
        identity_1x1: bool = True,
        normalize: bool = False,
        impl: str = "box",
    ):
        super().__init__(channels)
        self.kernel_sizes = tuple(_check_kernel(k) for k in kernel_sizes)
        if not self.kernel_sizes:
            raise ValueError("kernel_sizes must not be empty")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if impl not in ("box", "conv"):
            raise ValueError(f"impl must be 'box' or 'conv', got {impl!r}")
        self.mode, self.identity_1x1, self.normalize, self.impl = mode, bool(identity_1x1), bool(normalize), impl

    def extra_repr(self) -> str:
        return (
            f"kernel_sizes={self.kernel_sizes}, mode={self.mode!r}, identity_1x1={self.identity_1x1}, "
            f"normalize={self.normalize}, impl={self.impl!r}"
        )

    def _filter(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if k == 1 and self.identity_1x1:
            return x
        if self.impl == "box":
            return box_filter(x, k, self.mode, self.normalize)
        y = all_ones_conv2d(x, k, self.mode)
        if self.normalize:
            y = y / (k * k * (x.shape[1] if self.mode == "dense" else 1))
        return y

    def terms(self, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        """The per-scale difference maps ``|Filter_k(a) - Filter_k(b)|`` (dense terms have one channel)."""
        if self.impl == "conv":
            return [(self._filter(a, k) - self._filter(b, k)).abs() for k in self.kernel_sizes]
        d = a - b  # linearity: Filter(a) - Filter(b) = Filter(a - b)
        if d.dtype in (torch.float16, torch.bfloat16):  # box sums in float32 (AMP)
            d = d.float()
        out, channel_sum = [], None
        for k in self.kernel_sizes:
            if k == 1 and self.identity_1x1:
                out.append(d.abs())
            elif self.mode == "dense":  # one channel sum shared by every scale
                if channel_sum is None:
                    channel_sum = d.sum(dim=1, keepdim=True)
                t = box_filter(channel_sum, k, "depthwise", self.normalize)
                out.append((t / d.shape[1] if self.normalize else t).abs())
            else:
                out.append(box_filter(d, k, "depthwise", self.normalize).abs())
        return out

    def combine(self, a, b):
        terms = self.terms(a, b)
        single = [t for t in terms if t.shape[1] == 1 and self.channels != 1]
        full = [t for t in terms if not (t.shape[1] == 1 and self.channels != 1)]
        out = sum(full) if full else None
        if single:  # add the one-channel (dense) maps first, broadcast once
            s = sum(single)
            out = s.expand(-1, self.channels, -1, -1) if out is None else out + s
        return out.to(a.dtype)


class _BranchUnit(_Unit):
    """A unit whose difference terms come from learnable branches applied to each operand."""

    def branch_outputs(self, x: torch.Tensor, operand: str) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def combine(self, a, b):
        out = None
        for ya, yb in zip(self.branch_outputs(a, "a"), self.branch_outputs(b, "b")):
            t = (ya - yb).abs()
            out = t if out is None else out + t
        return out


class AsppSubtractionUnit(_BranchUnit):
    """MSU with ASPP (M2SNet Fig. 7, Table VIII): ``Conv(sum_j |B_j^A(F_A) - B_j^B(F_B)|)``.

    The fixed 1x1 / 3x3 / 5x5 all-ones filters become learnable ASPP branches with the same
    receptive fields: a 1x1 convolution, a 3x3 convolution and a 3x3 convolution with dilation 2
    (``kernel_sizes`` / ``rates``), each without bias and followed by a ReLU. The text does not give
    Fig. 7's layers; with a separate set of branches per operand (``shared=False``, default) the whole
    network has 29,248,809 parameters and 13.73 GMACs at 256 px: the paper's 29.2 M and 13.8 G
    (Table VIII). ``shared=True`` applies one set of branches to both operands, as the fixed filters are.
    """

    def __init__(
        self,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (1, 3, 3),
        rates: Sequence[int] = (1, 1, 2),
        shared: bool = False,
    ):
        super().__init__(channels)
        if len(kernel_sizes) != len(rates):
            raise ValueError("kernel_sizes and rates must have the same length")

        def branches():
            return nn.ModuleList(
                nn.Sequential(
                    nn.Conv2d(
                        channels,
                        channels,
                        _check_kernel(int(k)),
                        padding=int(r) * (int(k) // 2),
                        dilation=int(r),
                        bias=False,
                    ),
                    nn.ReLU(inplace=True),
                )
                for k, r in zip(kernel_sizes, rates)
            )

        self.shared = bool(shared)
        self.branches_a = branches()
        self.branches_b = self.branches_a if shared else branches()

    def branch_outputs(self, x, operand):
        return [br(x) for br in (self.branches_a if operand == "a" else self.branches_b)]


class DenseAsppSubtractionUnit(_BranchUnit):
    """MSU with DenseASPP (M2SNet Fig. 7, Table VIII): layer ``j`` sees ``cat(x, y_1, ..., y_{j-1})``.

    Layers: ``kernel_sizes`` / ``rates`` (default 1x1, 3x3 rate 3, 3x3 rate 6), each conv + BN + ReLU to
    ``C`` channels, shared by both operands; ``Conv(sum_j |y_j(F_A) - y_j(F_B)|)``. The defaults give
    29,580,329 parameters for the whole network, the paper's 29.6 M (20.6 GMACs at 256 px against the
    paper's 17.5 G).
    """

    def __init__(self, channels: int = 64, kernel_sizes: Sequence[int] = (1, 3, 3), rates: Sequence[int] = (1, 3, 6)):
        super().__init__(channels)
        if len(kernel_sizes) != len(rates):
            raise ValueError("kernel_sizes and rates must have the same length")
        self.layers = nn.ModuleList(
            ConvBNReLU(channels * (j + 1), channels, _check_kernel(int(k)), int(r), bias=False)
            for j, (k, r) in enumerate(zip(kernel_sizes, rates))
        )

    def branch_outputs(self, x, operand):
        feats, outs = [x], []
        for layer in self.layers:
            y = layer(torch.cat(feats, dim=1))
            feats.append(y)
            outs.append(y)
        return outs


UNITS = {
    "au": AdditionUnit,
    "su": SubtractionUnit,
    "msu": MultiScaleSubtractionUnit,
    "msu_aspp": AsppSubtractionUnit,
    "msu_denseaspp": DenseAsppSubtractionUnit,
}


def make_unit(unit: str, channels: int, **kwargs) -> nn.Module:
    """Build a unit by name (``"au" | "su" | "msu" | "msu_aspp" | "msu_denseaspp"``); ``kwargs`` go to MSU variants."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; valid units are {', '.join(map(repr, UNITS))}")
    if kwargs and unit in ("au", "su"):
        raise ValueError(f"unit {unit!r} takes no options, got {sorted(kwargs)}")
    return UNITS[unit](channels, **kwargs)
