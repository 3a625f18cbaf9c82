"""The PDCR + UAFR recipe (Liu et al., TMI 2022, Sec. V-A, Table IV): a segmentation network
(UNet, FCN-ResNet, DeepLabV3+-ResNet) with UAFR blocks after chosen layers and the patch-dragsaw
contrastive regularisation (PDCR) on chosen layers, all from a :class:`mslib.configs.PDCRConfig`.

Total loss (Sec. V-A; the places of the official 2D ``demo.yaml``)::

    L = CE(logits, y) [+ dice_weight * Dice]                  (``seg``)
        + encoder_weight * H-PDCR(encoder layers)               (Eq. 12, single-layer terms)
        + cross_weight   * H-PDCR(encoder layer pair)           (Eq. 12, cross-layer term, 1x1 projections)
        + decoder_weight * H-PDCR(decoder layers)               (Eq. 12, single-layer terms)

:func:`pdcr_step` is the step function of :func:`mslib.train.fit` that computes it and logs each
term (``train_seg``, ``train_pdcr_encoder``, ``train_pdcr_cross``, ``train_pdcr_decoder``).
There is no training loop here: everything trains through ``fit``.

:class:`PDCRNet` is what trains: the network with its UAFR hooks
(:class:`mslib.models.plugins.PlugIn`) plus the PDCR loss modules (their only parameters are the
cross-layer projections, used in training only). In ``eval()`` mode the feature taps keep nothing
and no PDCR code runs, so PDCR costs nothing at inference; :meth:`PDCRNet.inference_parameters`
counts what a deployed model keeps (network + UAFR).

Layer choices (``None`` in the config: :func:`default_layers`): PDCR on the two encoder stages at
strides 2 and 4 (the official 2D taps: Xception's 64-channel stride-2 and 128-channel stride-4
features; the ResNet stem ``backbone.relu`` and ``backbone.layer1``; UNet ``encoder.1`` and
``encoder.2``) with the cross-layer term between them, and on the decoder's low-level projection and
last conv (DeepLabV3+ ``project`` and ``decoder``; UNet the last two decoder stages; FCN, which has
no decoder, the head's ReLU ``classifier.2``); UAFR after every encoder and decoder stage (not ASPP).

RF-PDCR (``pdcr="rf"``) needs each tapped layer's (kernel, stride, padding) stack: build
:class:`mslib.losses.dragsaw.PatchDragsawLoss` with ``receptive_fields=...`` directly; the recipe
trains H-PDCR, the paper's better variant (Table VI).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCN, FCNHead

from mslib.data import AUGMENTATIONS, build_transforms
from mslib.losses.dice import soft_dice_loss
from mslib.losses.dragsaw import PatchDragsawLoss
from mslib.models.deeplabv3plus import RESNETS, DeepLabV3Plus, _dilate_basic_layer, _resnet_spec
from mslib.models.plugins import PlugIn
from mslib.models.unet import UNet
from mslib.recipes.base import Recipe
from mslib.weights import IMAGENET_MEAN, IMAGENET_STD, load_state_dict_into, load_weights

__all__ = [
    "NETWORKS",
    "DATASETS",
    "PDCRNet",
    "PDCRLoss",
    "build_network",
    "build_fcn",
    "default_layers",
    "build_pdcr_net",
    "pdcr_step",
    "pdcr_transforms",
    "dataset_config",
    "recipe",
]

NETWORKS = ("unet", "fcn", "deeplabv3plus")

#: Per-dataset settings of the paper's experiments (Sec. V-A, Tables I-III): training set, test set and
#: input size (H, W). ISIC 2016 is tested on its own test split and on PH2 (``isic2016-ph2`` prepares
#: the PH2 images as a test set of the ISIC 2016 model); Montgomery (MC chest X-rays) and DigestPath
#: (colonoscopy tissue slices, 512 px crops) are the other 2D datasets.
DATASETS: dict[str, dict[str, Any]] = {
    "isic2016": {"dataset": "isic2016", "test_dataset": "ph2", "image_size": (384, 512)},
    "isic2017": {"dataset": "isic2017", "test_dataset": None, "image_size": (384, 512)},
    "montgomery": {"dataset": "montgomery", "test_dataset": None, "image_size": (512, 512)},
    "digestpath": {"dataset": "digestpath", "test_dataset": None, "image_size": (512, 512)},
}


def dataset_config(config, name: str):
    """``config`` with the per-dataset settings of :data:`DATASETS` (dataset, test set, input size)."""
    if name not in DATASETS:
        raise ValueError(f"dataset_config: unknown dataset {name!r}; known: {', '.join(map(repr, DATASETS))}")
    return dataclasses.replace(config, **DATASETS[name])


# ------------------------------------------------------------------------------------------ networks
def build_fcn(num_classes: int, backbone: str = "resnet50", pretrained: object = False, in_channels: int = 3) -> FCN:
    """torchvision's FCN (``FCN`` + ``FCNHead``, output stride 8) on any torchvision ResNet.

    ``torchvision.models.segmentation.fcn_resnet50`` builds the same for ResNet-50/101; BasicBlock
    ResNets (18/34), which torchvision refuses to dilate, get dilation 2 and 4 on layer3 / layer4 by
    hand, as :class:`~mslib.models.deeplabv3plus.DeepLabV3Plus` does. ``pretrained``: ImageNet
    weights of the ResNet (True | False | "auto" | path).
    """
    if backbone not in RESNETS:
        raise ValueError(f"build_fcn: backbone must be one of {RESNETS}, got {backbone!r}")
    bottleneck = backbone in ("resnet50", "resnet101")
    kw = {"replace_stride_with_dilation": [False, True, True]} if bottleneck else {}
    resnet = getattr(torchvision.models, backbone)(weights=None, **kw)
    state = load_weights(_resnet_spec(backbone), pretrained) if pretrained is not False else None
    if state is not None:
        load_state_dict_into(resnet, state, source=f"ImageNet {backbone} weights")
    if not bottleneck:
        _dilate_basic_layer(resnet.layer3, 2)
        _dilate_basic_layer(resnet.layer4, 4)
    if in_channels != 3:
        resnet.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    body = IntermediateLayerGetter(resnet, {"layer4": "out"})
    return FCN(body, FCNHead(2048 if bottleneck else 512, num_classes), None)


def build_network(config, in_channels: int, num_classes: int) -> nn.Module:
    """The bare network of ``config.network`` (no UAFR, no PDCR)."""
    if config.network == "unet":
        return UNet(
            in_channels=in_channels, num_classes=num_classes, base_channels=config.base_channels, depth=config.depth
        )
    if config.network == "fcn":
        return build_fcn(num_classes, config.backbone, config.pretrained, in_channels)
    if config.network == "deeplabv3plus":
        return DeepLabV3Plus(num_classes, config.backbone, config.output_stride, config.pretrained, in_channels)
    raise ValueError(f"config.network must be one of {NETWORKS}, got {config.network!r}")


def default_layers(config) -> dict[str, tuple[str, ...]]:
    """Layer names (``model.named_modules()``) of the PDCR taps (``encoder``, ``decoder``) and of UAFR."""
    if config.network == "unet":
        d = config.depth
        enc, dec = ("encoder.1", "encoder.2"), (f"decoder.{d - 2}", f"decoder.{d - 1}")
        uafr = tuple(f"encoder.{i}" for i in range(d + 1)) + tuple(f"decoder.{i}" for i in range(d))
    elif config.network == "deeplabv3plus":
        enc, dec = ("backbone.relu", "backbone.layer1"), ("project", "decoder")
        uafr = tuple(f"backbone.layer{i}" for i in range(1, 5)) + ("project", "decoder")
    elif config.network == "fcn":
        enc, dec = ("backbone.relu", "backbone.layer1"), ("classifier.2",)
        uafr = tuple(f"backbone.layer{i}" for i in range(1, 5)) + ("classifier.2",)
    else:
        raise ValueError(f"config.network must be one of {NETWORKS}, got {config.network!r}")
    pick = lambda given, default: tuple(default if given is None else given)  # noqa: E731
    return {
        "encoder": pick(config.pdcr_encoder_layers, enc),
        "decoder": pick(config.pdcr_decoder_layers, dec),
        "uafr": pick(config.uafr_layers, uafr),
    }


# ------------------------------------------------------------------------------------------ PDCR
class PDCRLoss(nn.Module):
    """The PDCR part of the total loss, per place: ``terms = pdcr_loss(enc_feats, dec_feats, mask)``.

    Returns ``{"encoder": .., "cross": .., "decoder": ..}`` (only the places in use), each an
    H-PDCR term (Eq. 12) of :class:`~mslib.losses.dragsaw.PatchDragsawLoss`; :meth:`total`
    weights and sums them. The only parameters are the cross-layer 1x1 projections (Sec. III-C-2).
    """

    def __init__(self, config, encoder_channels: Sequence[int], num_decoder_layers: int, num_classes: int):
        super().__init__()
        if config.pdcr not in ("h", "rf", "none"):
            raise ValueError(f"config.pdcr must be 'h', 'rf' or 'none', got {config.pdcr!r}")
        if config.pdcr == "rf":
            raise ValueError(
                "config.pdcr='rf': the recipe trains H-PDCR (Table VI's better variant); for RF-PDCR "
                "build mslib.losses.PatchDragsawLoss(receptive_fields=[...]) with each layer's "
                "(kernel, stride, padding) stack and call it in your own step function"
            )
        common = dict(
            patch_sizes=tuple(config.patch_sizes),
            tau=config.tau,
            num_classes=num_classes,
            affinity=config.affinity,
            phi_norm=config.phi_norm,
            ratio_first=config.ratio_first,
            position_encoding=config.position_encoding,
            reduction=config.pdcr_reduction,
            legacy_orientation=config.legacy_orientation,
            legacy_transposed_ratios=config.legacy_transposed_ratios,
        )
        self.weights: dict[str, float] = {}
        self.places = nn.ModuleDict()
        if config.pdcr == "none":
            return
        n_enc = tuple(config.num_vectors)[: len(encoder_channels)]
        if encoder_channels and config.encoder_weight:
            self.places["encoder"] = PatchDragsawLoss(num_vectors=n_enc, **common)
            self.weights["encoder"] = float(config.encoder_weight)
        if len(encoder_channels) >= 2 and config.cross_layer and config.cross_weight:
            self.places["cross"] = PatchDragsawLoss(
                num_vectors=n_enc,
                single_layer=False,
                cross_layer_pairs=[(0, 1)],
                in_channels=list(encoder_channels),
                proj_channels=config.proj_channels,
                **common,
            )
            self.weights["cross"] = float(config.cross_weight)
        if num_decoder_layers and config.decoder_weight:
            n_dec = tuple(config.decoder_num_vectors)[:num_decoder_layers]
            self.places["decoder"] = PatchDragsawLoss(num_vectors=n_dec, **common)
            self.weights["decoder"] = float(config.decoder_weight)

    def forward(
        self, encoder_features: Sequence[torch.Tensor], decoder_features: Sequence[torch.Tensor], mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        feats = {"encoder": encoder_features, "cross": encoder_features, "decoder": decoder_features}
        return {place: loss(list(feats[place]), mask) for place, loss in self.places.items()}

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_place weight_place * term_place`` (Sec. V-A: weight 0.01 each)."""
        return sum(self.weights[k] * v for k, v in terms.items())


class PDCRNet(nn.Module):
    """A network with UAFR hooks and PDCR feature taps, plus its PDCR loss (training only).

    ``forward(x)`` returns the logits; after a training forward :meth:`pdcr_terms` ``(mask)``
    computes the PDCR terms on the tapped features. In ``eval()`` mode nothing is tapped and no
    PDCR code runs.
    """

    def __init__(
        self,
        network: nn.Module,
        encoder_layers: Sequence[str] = (),
        decoder_layers: Sequence[str] = (),
        uafr_layers: Sequence[str] = (),
        pdcr_loss: PDCRLoss | None = None,
        example_input=None,
        **uafr_kwargs,
    ):
        super().__init__()
        self.encoder_layers, self.decoder_layers = tuple(encoder_layers), tuple(decoder_layers)
        taps = self.encoder_layers + self.decoder_layers
        self.net = PlugIn(network, uafr_layers, taps, example_input=example_input, **uafr_kwargs)
        self.pdcr = pdcr_loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def pdcr_terms(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The PDCR terms (unweighted) of the last training forward; ``{}`` without PDCR."""
        if self.pdcr is None or not len(self.pdcr.places):
            if self.net.tap is not None:
                self.net.tap.clear()
            return {}
        feats = self.net.tap.pop()
        n = len(self.encoder_layers)
        return self.pdcr(feats[:n], feats[n:], mask)

    def inference_parameters(self) -> int:
        """Parameters a deployed model keeps: the network and its UAFR blocks (no PDCR projection)."""
        return sum(p.numel() for p in self.net.parameters())


def build_pdcr_net(config, in_channels: int = 3, num_classes: int | None = None) -> PDCRNet:
    """:class:`PDCRNet` of a config: network, UAFR (``config.uafr``) and PDCR (``config.pdcr``) at the
    layers of :func:`default_layers` (or the config's)."""
    num_classes = config.num_classes if num_classes is None else num_classes
    network = build_network(config, in_channels, num_classes)
    layers = default_layers(config)
    use_pdcr = config.pdcr != "none"
    enc = layers["encoder"] if use_pdcr and (config.encoder_weight or config.cross_weight) else ()
    dec = layers["decoder"] if use_pdcr and config.decoder_weight else ()
    uafr = layers["uafr"] if config.uafr else ()
    side = 64 if config.network == "unet" else 96
    example = torch.zeros(2, in_channels, side, side)
    net = PDCRNet(
        network, enc, dec, uafr, None, example_input=example, num_states=config.uafr_states, hidden=config.uafr_hidden
    )
    if enc or dec:
        chans = net.net.pdcr_channels
        net.pdcr = PDCRLoss(config, chans[: len(enc)], len(dec), num_classes)
        ref = next(network.parameters())
        net.pdcr.to(device=ref.device, dtype=ref.dtype)
    return net


# ------------------------------------------------------------------------------------------ training
def _seg_loss(dice_weight: float):
    def seg(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """CE (the paper's loss) + ``dice_weight`` x soft Dice."""
        loss = F.cross_entropy(logits.float(), masks.long())
        if dice_weight:
            loss = loss + dice_weight * soft_dice_loss(logits.float(), masks.long())
        return loss

    return seg


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def pdcr_step(ctx, batch):
    """``step_fn`` of :func:`mslib.train.fit`: CE (+ Dice) + sum of weight x PDCR per place; logs each term.

    ``ctx.model`` is called (the DDP wrapper under torchrun); the PDCR terms are then computed on
    the features its training forward tapped. A model without PDCR (a bare network) trains on
    ``ctx.loss_fn`` alone, so the same step serves the baselines.
    """
    images, masks = batch[0], batch[1]
    logits = ctx.model(images)
    seg = ctx.loss_fn(logits, masks)
    net = (
        ctx.models["model"]
        if isinstance(getattr(ctx, "models", None), dict) and "model" in ctx.models
        else _unwrap(ctx.model)
    )
    logs = {"seg": seg.detach()}
    if not isinstance(net, PDCRNet) or net.pdcr is None:
        return seg, logs
    terms = net.pdcr_terms(masks)
    loss = seg + net.pdcr.total(terms) if terms else seg
    logs.update({f"pdcr_{k}": v.detach() for k, v in terms.items()})
    return loss, logs


def pdcr_transforms(config, train: bool, in_channels: int = 3):
    """Joint transforms (Sec. V-A): resize to ``config.image_size``; in training flips on both axes and
    the affine map (scale, rotation, shear, translation) of :data:`mslib.data.AUGMENTATIONS` ``["pdcr"]``
    with the config's values; ImageNet normalisation for 3-channel images on a ResNet backbone."""
    aug = dict(AUGMENTATIONS["pdcr"])
    aug.update(
        hflip=config.hflip,
        vflip=config.vflip,
        rotation=config.rotation,
        scale=tuple(config.scale),
        shear=config.shear,
        translate=config.translate,
    )
    norm = (IMAGENET_MEAN, IMAGENET_STD) if config.network != "unet" and in_channels == 3 else None
    kw = aug if train else {}
    return build_transforms(train, config.image_size, normalize=norm, **kw)


def recipe(config, in_channels: int, out_channels: int) -> Recipe:
    """``python -m mslib train --model pdcr``: :class:`PDCRNet`, :func:`pdcr_step`, CE (+ Dice), transforms.

    The paper trains with cross-entropy over background + foreground, so a binary dataset
    (``out_channels == 1``) gets two output channels (validated with argmax). The optimiser and
    schedule come from the config (paper: Adam 1e-3, weight decay 1e-5, cosine to 1e-5 after a
    2-epoch warm-up).
    """
    num_classes = max(2, out_channels)
    cfg = dataclasses.replace(config, in_channels=in_channels, num_classes=num_classes)
    net = build_pdcr_net(cfg, in_channels, num_classes)
    multiple = 2**cfg.depth if cfg.network == "unet" else None
    return Recipe(
        net,
        {"loss_fn": _seg_loss(cfg.dice_weight), "step_fn": pdcr_step},
        lambda train: pdcr_transforms(cfg, train, in_channels),
        size_multiple=multiple,
    )
