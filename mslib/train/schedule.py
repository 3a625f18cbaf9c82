"""Learning-rate schedules: linear warm-up, then constant, linear, cosine or poly decay, per step.

The factor multiplies each parameter group's own base learning rate (so a backbone at
0.005 and a head at 0.05, as in M2SNet Sec. IV-B, keep their ratio throughout). With
``W`` warm-up steps and ``T`` total steps, at step ``t`` (0-based; the step about to be taken):

    warm-up (t < W):   f(t) = (t + 1) / W
    afterwards:        u = min(1, (t - W) / max(1, T - W))
        constant:      f = 1
        linear:        f = r + (1 - r) (1 - u)
        cosine:        f = r + (1 - r) (1 + cos(pi u)) / 2
        poly:          f = r + (1 - r) (1 - u)^power

with ``r = min_lr_ratio``. M2SNet's "warm-up and linear decay" is ``schedule="linear"``
with a warm-up; the "poly" rule with power 0.9 is DeepLab's.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["SCHEDULES", "lr_factor", "build_scheduler"]

SCHEDULES = ("constant", "linear", "cosine", "poly")


def _check(total_steps: int, schedule: str, warmup_steps: int, poly_power: float, min_lr_ratio: float) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid schedules are {', '.join(map(repr, SCHEDULES))}")
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
    if poly_power <= 0:
        raise ValueError(f"poly_power must be > 0, got {poly_power!r}")


def lr_factor(
    step: int,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    poly_power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> float:
    """The factor applied to the base learning rate at 0-based ``step`` (formulas in the module docstring)."""
    _check(total_steps, schedule, warmup_steps, poly_power, min_lr_ratio)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    u = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    r = min_lr_ratio
    if schedule == "linear":
        shape = 1.0 - u
    elif schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * u))
    else:
        shape = (1.0 - u) ** poly_power
    return r + (1.0 - r) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    poly_power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` to every group's own base lr.

    Call ``.step()`` after each optimizer step."""
    _check(total_steps, schedule, warmup_steps, poly_power, min_lr_ratio)
    fn = functools.partial(
        lr_factor,
        total_steps=total_steps,
        schedule=schedule,
        warmup_steps=warmup_steps,
        poly_power=poly_power,
        min_lr_ratio=min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
