"""ImageNet weights for models: :mod:`mslib.weights` (bottom layer) re-exported under its old path."""

from mslib.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHTS,
    Pretrained,
    PretrainedWeightsUnavailable,
    WeightSpec,
    cache_path,
    check_pretrained,
    load_state_dict_into,
    load_weights,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Pretrained",
    "WeightSpec",
    "PretrainedWeightsUnavailable",
    "WEIGHTS",
    "check_pretrained",
    "cache_path",
    "load_weights",
    "load_state_dict_into",
]
