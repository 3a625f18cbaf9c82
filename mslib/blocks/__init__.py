"""Blocks: plain ``nn.Module`` building blocks (and their functional forms) to drop into any model.

>>> from mslib.blocks import MultiScaleSubtractionUnit
>>> msu = MultiScaleSubtractionUnit(64)          # M2SNet Eq. 2, no parameters beyond SU's conv
>>> y = msu(f_deep, f_shallow)                    # (B, 64, H, W), f_deep upsampled to f_shallow

Every name is also importable from its module (``mslib.blocks.subtraction`` ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mslib.utils import lazy_exports

if TYPE_CHECKING:
    from mslib.blocks.attention import (
        EfficientAttention,
        EfficientTransformerBlock,
        MixFFN,
        efficient_attention,
        softmax_attention,
    )
    from mslib.blocks.intra_scale import (
        IntraScaleTokens,
        adaptive_bins,
        batch_norm_affine,
        box_means,
        integral_image,
        shifted_pairs,
    )
    from mslib.blocks.subtraction import (
        UNITS,
        AdditionUnit,
        AsppSubtractionUnit,
        ConvBNReLU,
        DenseAsppSubtractionUnit,
        MultiScaleSubtractionUnit,
        SubtractionUnit,
        all_ones_conv2d,
        box_filter,
        make_unit,
        upsample_to,
    )
    from mslib.blocks.uafr import UAFR, normalized_entropy, uafr_num_parameters

#: public name -> its module, loaded on first use (PEP 562): ``mslib.blocks.subtraction`` needs torchvision,
#: the MS-Former blocks do not
_WHERE = {
    "EfficientAttention": "attention",
    "EfficientTransformerBlock": "attention",
    "MixFFN": "attention",
    "efficient_attention": "attention",
    "softmax_attention": "attention",
    "IntraScaleTokens": "intra_scale",
    "adaptive_bins": "intra_scale",
    "batch_norm_affine": "intra_scale",
    "box_means": "intra_scale",
    "integral_image": "intra_scale",
    "shifted_pairs": "intra_scale",
    "UNITS": "subtraction",
    "AdditionUnit": "subtraction",
    "AsppSubtractionUnit": "subtraction",
    "ConvBNReLU": "subtraction",
    "DenseAsppSubtractionUnit": "subtraction",
    "MultiScaleSubtractionUnit": "subtraction",
    "SubtractionUnit": "subtraction",
    "all_ones_conv2d": "subtraction",
    "box_filter": "subtraction",
    "make_unit": "subtraction",
    "upsample_to": "subtraction",
    "UAFR": "uafr",
    "normalized_entropy": "uafr",
    "uafr_num_parameters": "uafr",
}


__getattr__ = lazy_exports("mslib.blocks", _WHERE, globals())

__all__ = [
    # attention (MS-Former Eq. 1-2)
    "efficient_attention",
    "softmax_attention",
    "EfficientAttention",
    "MixFFN",
    "EfficientTransformerBlock",
    # intra-scale tokens (MS-Former Eq. 7)
    "shifted_pairs",
    "batch_norm_affine",
    "integral_image",
    "adaptive_bins",
    "box_means",
    "IntraScaleTokens",
    # subtraction units (M2SNet Eq. 1-2)
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
    # uncertainty-aware feature refinement (PDCR)
    "UAFR",
    "normalized_entropy",
    "uafr_num_parameters",
]
