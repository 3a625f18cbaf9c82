"""Configurations: one dataclass per method, each with a ``quick`` and a ``paper`` profile.

``quick`` runs on 2 CPU cores in about a minute on synthetic data; ``paper`` is the
paper's architecture, resolution, optimiser, schedule, epochs and loss weights (each value
cites the section it comes from). Both go through the same code: a profile is just data.

>>> cfg = get_config("unet", "quick")
>>> cfg = get_config("unet", "paper", epochs=3)      # overrides are checked by name
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

PROFILES = ("quick", "paper")
_REGISTRY: dict[str, type] = {}

__all__ = ["PROFILES", "TrainConfig", "register", "get_config", "available_methods"]


def register(name: str) -> Callable[[type], type]:
    """Class decorator: register a config dataclass with ``quick()`` and ``paper()`` classmethods."""

    def deco(cls: type) -> type:
        for p in PROFILES:
            if not callable(getattr(cls, p, None)):
                raise TypeError(f"config {cls.__name__} needs a classmethod {p}()")
        _REGISTRY[name] = cls
        return cls

    return deco


def available_methods() -> list[str]:
    return sorted(_REGISTRY)


def check_profile(profile: str) -> str:
    """Return ``profile`` or raise a ValueError that lists the valid profiles."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(map(repr, PROFILES))}")
    return profile


def get_config(method: str, profile: str = "quick", **overrides):
    """The config of ``method`` for ``profile``, with keyword overrides checked by name."""
    check_profile(profile)
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; known methods are {', '.join(map(repr, available_methods()))}")
    cfg = getattr(_REGISTRY[method], profile)()
    names = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown config field(s) {bad} for {method!r}; valid fields: {sorted(names)}")
    return dataclasses.replace(cfg, **overrides)


@dataclass
class TrainConfig:
    """Options of :func:`mslib.train.engine.fit` shared by every supervised method."""

    profile: str = "quick"
    epochs: int = 5
    batch_size: int = 8
    image_size: int = 128
    optimizer: str = "adamw"          # "sgd" | "adam" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"          # "constant" | "linear" | "cosine" | "poly"
    warmup_epochs: float = 0.0
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    amp: bool = True                  # autocast on the model's device type (ignored on CPU unless bf16 is asked for)
    num_workers: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)


# ---- method configs are added below, one dataclass per method ---------------------
