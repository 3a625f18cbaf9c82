"""Training: the supervised engine (:func:`fit`, :func:`evaluate`), schedules and DDP helpers."""
from mslib.train.engine import History, build_optimizer, evaluate, fit
from mslib.train.schedule import SCHEDULES, build_scheduler, lr_factor

__all__ = ["History", "fit", "evaluate", "build_optimizer", "lr_factor", "build_scheduler", "SCHEDULES"]
