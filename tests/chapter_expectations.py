"""What each chapter must record when it runs with the quick profile.

Every chapter listed in _toc.yml needs an entry here (tests/test_notebooks.py fails
otherwise), so that no chapter runs untested. An entry maps a recorded name to a check:
a ``(low, high)`` range (inclusive; ``None`` for an open end) or a callable returning bool.
``nbval`` marks cheap, deterministic chapters that nbval also re-runs (``--nbval-lax``).
"""
from __future__ import annotations

EXPECTATIONS: dict[str, dict] = {
    "01_data_and_metrics": {
        "records": {
            "num_tasks": (4, 4),
            "dice_perfect": (1.0, 1.0),
            "dice_shifted": (0.3, 0.99),
            "hd95_shifted": (0.5, None),
        },
        "nbval": True,
    },
    "02_training_loop": {
        "records": {
            "val_dice": (0.7, 1.0),              # well above chance (an empty or all-ones mask scores far lower)
            "resume_matches": (1, 1),             # interrupted + resumed == uninterrupted
        },
        "nbval": False,
    },
}
