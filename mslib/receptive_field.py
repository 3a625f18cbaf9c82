"""Receptive fields of feature positions: analytic (PDCR Eq. 5-7) and probed from a real network.

RF-PDCR (Liu et al., TMI 2022, Sec. III-B) links every feature vector of layer ``l`` to the
square patch of the image it sees, its receptive field ``R_i``. For a stack of convolutions
and poolings with kernel ``k_z``, stride ``s_z`` and padding ``p_z`` (z = 1..l), along one axis:

* Eq. 7, size: ``r = 1 + sum_z (k_z - 1) * prod_{t<z} s_t`` (a dilation ``d_z`` makes the kernel
  ``d_z (k_z - 1) + 1`` wide);
* Eq. 5, start of the field of the (0-based) position ``o_l``:
  ``o = o_l * prod_t s_t - sum_z p_z * prod_{t<z} s_t``;
* Eq. 6, end: ``e = e_l * prod_t s_t - sum_z (1 + p_z - k_z) * prod_{t<z} s_t`` with ``e_l = o_l``
  for one vector, so ``e = o + r - 1``.

(The paper writes ``o_l = e_l + 1`` and ``r = o - e + 1``; with ``o`` the start and ``e`` the
end both are sign slips, ``o_l = e_l`` and ``r = e - o + 1`` are what Eq. 5-7 give.)

The field can reach outside the image (into the padding): :func:`rf_boxes` returns the
unclipped box, whose area ``r^2`` is the denominator of Eq. 4 ("padding counted").

:func:`probe_receptive_field` measures the same box on a real network: the gradient of one
output position with respect to the input is non-zero exactly on its receptive field. To make
that exact (no dead ReLU, no max-pooling that routes the gradient to one pixel, no batch-norm
coupling of positions) it probes a float64 copy in which every convolution averages (weights
``1 / fan_in``, no bias), normalisations are identities and max-poolings are average poolings,
the method of the pytorch-receptivefield package the official code used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ReceptiveField", "receptive_field", "rf_boxes", "probe_receptive_field", "resnet_conv_stack"]


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of a layer along one axis (PDCR Eq. 5-7).

    ``size`` is r (Eq. 7), ``jump`` the product of the strides (distance in input pixels between
    neighbouring positions), ``start`` the first input pixel seen by position 0 (Eq. 5 with
    ``o_l = 0``; negative when it starts in the padding). Position ``p`` sees input pixels
    ``start + p * jump`` to ``start + p * jump + size - 1`` (Eq. 5-6).
    """

    size: int
    jump: int
    start: int

    @property
    def center_offset(self) -> float:
        """Input coordinate of the centre of position 0's field (``start + (size - 1) / 2``)."""
        return self.start + (self.size - 1) / 2


def _check_layer(i: int, layer: Sequence[int]) -> tuple[int, int, int, int]:
    if len(layer) not in (3, 4) or any(not isinstance(v, int) or isinstance(v, bool) for v in layer):
        raise ValueError(
            f"receptive_field: layers[{i}] must be (kernel, stride, padding) or "
            f"(kernel, stride, padding, dilation) ints, got {layer!r}"
        )
    k, s, p = layer[:3]
    d = layer[3] if len(layer) == 4 else 1
    if k < 1 or s < 1 or p < 0 or d < 1:
        raise ValueError(
            f"receptive_field: layers[{i}] = {layer!r} needs kernel >= 1, stride >= 1, padding >= 0, dilation >= 1"
        )
    return k, s, p, d


def receptive_field(layers: Sequence[Sequence[int]]) -> ReceptiveField:
    """Receptive field after a chain of ``(kernel, stride, padding[, dilation])`` layers (Eq. 5-7).

    >>> receptive_field([(3, 1, 1), (3, 1, 1)])            # two 3x3 convs
    ReceptiveField(size=5, jump=1, start=-2)
    >>> receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1)])  # conv, 2x2 pool, conv
    ReceptiveField(size=8, jump=2, start=-3)
    """
    size, jump, start = 1, 1, 0
    for i, layer in enumerate(layers):
        k, s, p, d = _check_layer(i, layer)
        k_eff = d * (k - 1) + 1
        size += (k_eff - 1) * jump  # Eq. 7: (k_z - 1) prod_{t<z} s_t
        start -= p * jump  # Eq. 5: - p_z prod_{t<z} s_t
        jump *= s  # prod_{t<=z} s_t
    return ReceptiveField(size=size, jump=jump, start=start)


def rf_boxes(rf: ReceptiveField, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end (inclusive, unclipped) input coordinates of the fields of ``positions`` (Eq. 5-6)."""
    start = positions * rf.jump + rf.start
    return start, start + rf.size - 1


def _averaging_copy(model: nn.Module) -> nn.Module:
    probe = copy.deepcopy(model).double().eval()

    def swap(parent: nn.Module) -> None:
        for name, child in list(parent._modules.items()):  # not named_children(): it skips a module used twice
            if isinstance(
                child,
                (
                    nn.modules.batchnorm._BatchNorm,
                    nn.GroupNorm,
                    nn.LayerNorm,
                    nn.modules.instancenorm._InstanceNorm,
                    nn.Dropout,
                    nn.Dropout2d,
                ),
            ):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(
                    parent,
                    name,
                    nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode),
                )
            elif child is not None:
                swap(child)

    swap(probe)
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
                m.weight.fill_(1.0 / fan_in)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Linear):
                raise ValueError(
                    "probe_receptive_field: the probed network contains an nn.Linear; "
                    "probe only its convolutional part (pass a feature extractor)"
                )
    return probe


def probe_receptive_field(
    model: nn.Module,
    input_size: tuple[int, int],
    position: tuple[int, int] | None = None,
    in_channels: int = 3,
    output: Callable[[object], torch.Tensor] | None = None,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Receptive field of one output position measured by its input gradient.

    Args:
        model: the network (or a part of it) whose output feature map is probed; it is copied,
            never modified.
        input_size: (H, W) of the probing input.
        position: (row, col) of the output position; default the centre of the output map.
        in_channels: channels of the probing input.
        output: picks the feature map from the model's output (e.g. ``lambda out: out["layer2"]``).

    Returns:
        ``((row_start, row_end), (col_start, col_end), (out_h, out_w))``: the input box (inclusive,
        clipped to the image) where the gradient is non-zero, and the output map size.
    """
    probe = _averaging_copy(model)
    x = torch.ones(1, in_channels, *input_size, dtype=torch.float64, requires_grad=True)
    out = probe(x)
    out = output(out) if output is not None else out
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        raise ValueError(
            "probe_receptive_field: the model's output must be a (B, C, H, W) tensor; "
            "pass output=... to pick the feature map"
        )
    h, w = out.shape[-2:]
    r, c = position if position is not None else (h // 2, w // 2)
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"probe_receptive_field: position {(r, c)} is outside the {h}x{w} output map")
    out[0, :, r, c].sum().backward()
    nz = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(nz.any(1)).flatten()
    cols = torch.nonzero(nz.any(0)).flatten()
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1])), (h, w)


def resnet_conv_stack(
    stage: str, layers: Sequence[int] = (3, 4, 6, 3), bottleneck: bool = True
) -> list[tuple[int, int, int]]:
    """The (kernel, stride, padding) chain of the longest path to a torchvision ResNet stage.

    ``stage`` is ``"conv1"``, ``"maxpool"``, ``"layer1"`` .. ``"layer4"``; ``layers`` the blocks
    per stage ((2, 2, 2, 2) ResNet-18, (3, 4, 6, 3) ResNet-34/50); ``bottleneck`` for ResNet-50+
    (1x1, 3x3 with the stride, 1x1) instead of two 3x3 convs. The shortcut (1x1, stride) has a
    smaller field, so the main path decides the receptive field.
    """
    names = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    if stage not in names:
        raise ValueError(f"resnet_conv_stack: stage must be one of {names}, got {stage!r}")
    stack = [(7, 2, 3)]
    if stage == "conv1":
        return stack
    stack.append((3, 2, 1))
    for i, n in enumerate(layers[: names.index(stage) - 1]):
        for b in range(n):
            s = 2 if (i > 0 and b == 0) else 1
            stack += [(1, 1, 0), (3, s, 1), (1, 1, 0)] if bottleneck else [(3, s, 1), (3, 1, 1)]
    return stack
