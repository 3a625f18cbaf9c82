"""Plug PDCR and UAFR into an existing segmentation network by layer name, without editing its code.

The paper presents both as "lightweight plug-ins" (Liu et al., TMI 2022, Sec. I, Table IV):

* :func:`attach_uafr` puts a :class:`~mslib.blocks.uafr.UAFR` block (Eq. 13-15) after each named
  layer through a forward hook that returns the re-weighted output; the blocks live in
  ``model.uafr`` (a ``ModuleDict``, so they are in ``parameters()``/``state_dict()`` and move
  with ``.to()``; the model's own keys are unchanged, so its pretrained weights still load).
* :class:`FeatureTap` keeps the outputs of named layers during a training forward for the PDCR
  loss (:class:`mslib.losses.dragsaw.PatchDragsawLoss`); in ``eval()`` mode it stores nothing, so
  PDCR costs nothing at inference.
* :class:`PlugIn` wraps both around a model: ``forward(x)`` returns the logits (a torchvision
  segmentation model's ``{"out": ...}`` is unwrapped), ``features`` the tapped maps of the last
  training forward.

Hooks are bound methods of modules owned by the model, so ``copy.deepcopy`` and DDP keep them
consistent, and the model still runs under ``torch.compile`` (tested).

Layer names are those of ``model.named_modules()``, e.g. ``encoder.1`` / ``decoder.0`` of
:class:`mslib.models.unet.UNet`, ``backbone.layer2`` of torchvision's FCN and of
:class:`mslib.models.deeplabv3plus.DeepLabV3Plus`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mslib.blocks.uafr import UAFR

__all__ = ["attach_uafr", "FeatureTap", "PlugIn", "layer_channels"]


def _module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        near = [n for n in modules if n and name.split(".")[-1] in n][:8]
        raise ValueError(
            f"no layer named {name!r} in {type(model).__name__}; names come from model.named_modules()"
            f"{', e.g. ' + ', '.join(near) if near else ''}"
        )
    return modules[name]


def _key(name: str) -> str:
    return name.replace(".", "__")


def layer_channels(model: nn.Module, layers: Sequence[str], example_input: torch.Tensor) -> dict[str, int]:
    """Output channels of the named layers, from one no-grad forward of ``example_input`` in eval mode."""
    found: dict[str, int] = {}
    handles = []
    for name in layers:

        def rec(_m, _a, out, name=name):
            found[name] = out.shape[1]

        handles.append(_module(model, name).register_forward_hook(rec))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    missing = [n for n in layers if n not in found]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass; pick layers on the forward path")
    return found


class _UAFRHook(nn.Module):
    def __init__(self, block: UAFR):
        super().__init__()
        self.block = block

    def hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise TypeError(
                f"UAFR can only follow a layer returning a (B, C, H, W) tensor, got {type(output).__name__}"
            )
        return self.block(output)


def attach_uafr(
    model: nn.Module,
    layers: Sequence[str],
    channels: Mapping[str, int] | Sequence[int] | None = None,
    example_input: torch.Tensor | None = None,
    **uafr_kwargs,
) -> nn.ModuleDict:
    """Add a UAFR block after each named layer (forward hooks); returns ``model.uafr``.

    Channels come from ``channels`` (per layer) or from one forward of ``example_input``.
    ``uafr_kwargs`` go to :class:`UAFR` (``num_states``, ``hidden``, ``kernel_size``, ``dropout``).
    """
    if hasattr(model, "uafr"):
        raise ValueError(f"{type(model).__name__} already has a 'uafr' attribute; attach UAFR once, to all layers")
    layers = list(layers)
    if channels is None:
        if example_input is None:
            raise ValueError("attach_uafr needs channels= (per layer) or example_input= to measure them")
        channels = layer_channels(model, layers, example_input)
    elif not isinstance(channels, Mapping):
        if len(channels) != len(layers):
            raise ValueError(f"channels has {len(channels)} values for {len(layers)} layers")
        channels = dict(zip(layers, channels))
    blocks = nn.ModuleDict()
    handles = []
    ref = next(model.parameters(), None)
    for name in layers:
        target = _module(model, name)
        h = _UAFRHook(UAFR(int(channels[name]), **uafr_kwargs))
        if ref is not None:
            h.to(device=ref.device, dtype=ref.dtype)
        blocks[_key(name)] = h
        handles.append(target.register_forward_hook(h.hook))
    model.add_module("uafr", blocks)
    model._uafr_handles = handles
    model.uafr_channels = {name: int(channels[name]) for name in layers}
    return blocks


class FeatureTap(nn.Module):
    """Keep the outputs of named layers of ``model`` (forward hooks), in training mode only.

    ``tap.features`` lists the last training forward's maps in the order of ``layers``
    (``pop()`` returns and clears them). Registered as ``model.pdcr_tap`` when ``register=True``
    so it follows the model through ``deepcopy``.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], register: bool = True):
        super().__init__()
        self.layers = list(layers)
        self._store: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in self.layers:
            self._handles.append(_module(model, name).register_forward_hook(self._make(name)))
        if register:
            model.add_module("pdcr_tap", self)

    def _make(self, name: str):
        return functools.partial(self._hook, name)  # a bound method: deepcopy re-binds it to the copy

    def _hook(self, name: str, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        if module.training:
            self._store[name] = output

    @property
    def features(self) -> list[torch.Tensor]:
        missing = [n for n in self.layers if n not in self._store]
        if missing:
            raise RuntimeError(f"no features for {missing}: run a forward pass in training mode first (model.train())")
        return [self._store[n] for n in self.layers]

    def pop(self) -> list[torch.Tensor]:
        feats = self.features
        self._store.clear()
        return feats

    def clear(self) -> None:
        self._store.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._store.clear()

    def forward(self, *args, **kwargs):  # pragma: no cover - a holder, not a layer
        raise RuntimeError("FeatureTap is not called; read tap.features after the model's forward")


class PlugIn(nn.Module):
    """A thin wrapper: ``PlugIn(model, uafr_layers=[...], pdcr_layers=[...], example_input=x)``.

    ``forward(x)`` returns the model's logits (``output_key`` of a dict output, "out" for
    torchvision's FCN/DeepLabV3); after a training forward ``features`` holds the maps of
    ``pdcr_layers`` for the PDCR loss. ``model`` is modified in place only by the hooks and
    the added ``uafr`` blocks; its own parameters and their names are unchanged.
    """

    def __init__(
        self,
        model: nn.Module,
        uafr_layers: Sequence[str] = (),
        pdcr_layers: Sequence[str] = (),
        example_input: torch.Tensor | None = None,
        uafr_channels: Mapping[str, int] | Sequence[int] | None = None,
        output_key: str = "out",
        **uafr_kwargs,
    ):
        super().__init__()
        self.model = model
        self.output_key = output_key
        if uafr_layers:
            attach_uafr(model, uafr_layers, channels=uafr_channels, example_input=example_input, **uafr_kwargs)
        self.tap = FeatureTap(model, pdcr_layers, register=False) if pdcr_layers else None
        self.pdcr_channels = (
            list(layer_channels(model, pdcr_layers, example_input).values())
            if pdcr_layers and example_input is not None
            else None
        )

    @property
    def features(self) -> list[torch.Tensor]:
        if self.tap is None:
            raise RuntimeError("PlugIn was built without pdcr_layers")
        return self.tap.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, Mapping):
            out = out[self.output_key]
        return out
