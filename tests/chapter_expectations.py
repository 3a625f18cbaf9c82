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
    "03_subtraction_unit": {
        "records": {
            "su_parity": (1, 1),                  # plain Eq. 1 == mslib SubtractionUnit (assert_close passed)
            "au_parity": (1, 1),                  # plain AU == mslib AdditionUnit
            "toy_shared_fraction": (0.8, 1.0),    # 2 min(a, b) / (a + b) of an image and its 4x-pooled copy (0.96)
            "encoder_shared_fraction": (0.5, 1.0),  # adjacent Res2Net energy maps share most of their sum (0.88 random init)
        },
        "nbval": True,
    },
    "04_multiscale_subtraction": {
        "records": {
            "box_identity": (1, 1),               # dense all-ones conv == k^2 avg_pool(sum_c), borders included
            "msu_parity": (1, 1),                 # plain Eq. 2 (dense convs) == mslib MSU (box filters)
            "msu_extra_params": (0, 0),           # MSU adds zero learnable parameters over the SU
            "num_units": (10, 10),                # MMSM: 4 + 3 + 2 + 1 units
            "region_contrast_gain": (1.5, None),  # 5x5 term separates a moved region from noise better than 1x1 (2.2)
            "term_ratio_5x5_1x1": (10, None),     # dense 5x5 term dwarfs the identity 1x1 term (~300)
            "box_speedup_min": (3, None),         # box filter vs dense conv, same run (33x-170x measured)
        },
        "nbval": True,
    },
    "05_lossnet_structure_loss": {
        "records": {
            "weight_parity": (1, 1),              # plain 31x31 weight map == mslib structure_weight
            "structure_parity": (1, 1),           # plain wBCE + wIoU == mslib structure_loss
            "lossnet_parity": (1, 1),             # plain Eq. 5-6 on torchvision VGG-16 == mslib LossNet
            "structure_intended": (1.21051, 1.21054),   # issue 3 reference value 1.210525
            "structure_legacy": (0.93716, 0.93719),     # official reduce='none' value 0.937174
            "structure_zero_logits": (1.41826, 1.41828),  # 1.418272 (notes), 1.4182713 exactly
            "lossnet_self": (0.0, 0.0),           # LossNet(G, G) = 0
            "lossnet_grows_with_shift": (1, 1),   # L_f strictly increasing with the shift size
        },
        "nbval": True,
    },
}
