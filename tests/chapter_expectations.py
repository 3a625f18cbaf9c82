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
    "06_training_m2snet": {
        "records": {
            "val_dice": (0.35, 1.0),              # quick M2SNet, 6 epochs from scratch: 0.52 (seed 0)
            "chance_dice": (0.1, 0.3),            # all-foreground predictor on the same images: 0.18
            "params_m2snet": (27_692_329, 27_692_329),   # Table VI 27.7 M; official code without its fc
            "gmacs_m2snet_256": (8.85, 8.97),     # every conv counted, box filters: 8.91 (= paper's 9.0 G reading)
            "gmacs_m2snet_352": (16.7, 17.0),     # 16.84
            "gmacs_literal_352": (33.0, 33.3),    # dense all-ones convs as the official code: 33.16
        },
        "nbval": False,                           # trains for a minute
    },
    "07_efficient_attention": {
        "records": {
            "eq2_parity": (1, 1),                 # plain Eq. 2 == mslib efficient_attention (and Eq. 1 == SDPA)
            "module_parity": (1, 1),              # EfficientAttention == plain Eq. 2 per head + reprojection
            "speedup_vs_sdpa_largest": (5, None),  # SDPA / efficient at 9216 tokens (about 30x on 2 cores)
        },
        "nbval": True,
    },
    "08_scale_consistency": {
        "records": {
            "inter_parity": (1, 1),               # plain Eq. 5-6 == mslib inter_scale_loss (matrix and rowwise)
            "inter_identical": (0.0, 1e-6),       # identical contexts -> 0
            "inter_orthogonal": (0.999999, 1.000001),  # orthogonal contexts -> 1
            "intra_parity": (1, 1),               # numpy Eq. 8-9 == mslib correlation_matrix / intra_scale_loss
            "intra_identity": (0.0, 0.0),         # rho = I -> 0
            "intra_ratio": (0.0, 0.95),           # L_intra falls during the optimisation
            "inter_ratio": (0.0, 0.5),            # L_inter falls much more
        },
        "nbval": True,
    },
    "09_selfsup_segmentation": {
        "records": {
            "toy_dsc": (0.6944, 0.6945),          # 10x10 toy masks: DSC 0.6944 (HM 0.4681, XOR 0.6111)
            "msformer_dsc": (0.6, 1.0),           # 6 synthetic skin images, honest protocol
            "kmeans_dsc": (0.3, 1.0),             # k-means K=3 on the same images
            "msformer_minus_kmeans": (0.02, None),  # MS-Former beats k-means on those images
            "legacy_gain_msformer": (0.0, None),  # the legacy GT crop only removes false positives
            "legacy_whole_image_dsc": (0.5, 1.0),  # "everything is lesion" + GT crop scores far above its honest DSC
        },
        "nbval": False,                           # optimises 12 networks
    },
}
