"""Training: the one engine (:func:`fit`, :func:`evaluate`, :class:`StepContext`), schedules and DDP helpers.

``distributed``, ``run_folder``, ``selfsup`` and ``semisup`` are re-exported as modules (their names are
specialised: ``mslib.train.distributed.is_main`` ...).
"""

from mslib.train import distributed, run_folder, selfsup, semisup
from mslib.train.engine import (
    BEST_CHECKPOINT,
    CHECKPOINT,
    OPTIMIZERS,
    History,
    StepContext,
    autocast_settings,
    build_optimizer,
    default_metrics,
    dice_metric,
    evaluate,
    fit,
    iou_metric,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mslib.train.schedule import SCHEDULES, build_scheduler, lr_factor

__all__ = [
    # engine
    "History",
    "StepContext",
    "fit",
    "evaluate",
    "build_optimizer",
    "autocast_settings",
    "default_metrics",
    "dice_metric",
    "iou_metric",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "OPTIMIZERS",
    "CHECKPOINT",
    "BEST_CHECKPOINT",
    # schedules
    "SCHEDULES",
    "lr_factor",
    "build_scheduler",
    # modules
    "distributed",
    "run_folder",
    "selfsup",
    "semisup",
]
