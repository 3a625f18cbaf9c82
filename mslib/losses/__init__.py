"""Losses: plain functions ``loss(logits, target)`` and loss modules, one module per paper.

>>> from mslib.losses import structure_loss
>>> loss = structure_loss(logits, mask)          # M2SNet Eq. 4: weighted BCE + weighted IoU

Every name is also importable from its module (``mslib.losses.structure`` ...).
"""

from mslib.losses.contrastive import (
    SAMPLINGS,
    CrossProjector,
    MultiScaleContrast,
    ProjectionHead,
    balanced_supcon_loss,
    contrast_labels,
    cross_contrastive_loss,
    features_by_scale,
    legacy_label_permutation,
    official_block_coverage,
    official_supcon,
)
from mslib.losses.cross_teaching import (
    SSL4MIS_SMOOTH,
    cps_loss,
    cps_weight,
    cross_teaching_losses,
    sigmoid_rampup,
    ssl4mis_dice_loss,
    supervised_loss,
)
from mslib.losses.dice import (
    dice_bce,
    dice_ce,
    soft_dice_loss,
)
from mslib.losses.dragsaw import (
    PatchDragsawLoss,
    cosine_similarity_matrix,
    dragsaw_loss,
)
from mslib.losses.lossnet import (
    VGG_CUTS,
    VGG_LAYER_NAMES,
    LossNet,
    M2SNetLoss,
)
from mslib.losses.patch_affinity import (
    AFFINITIES,
    PHI_NORMS,
    affinity,
    box_counts,
    center_label_affinity,
    dice_affinity,
    feature_centres,
    foreground_ratios,
    grid_positions,
    normalize_ratios,
    one_hot_mask,
    patch_boxes,
    patch_contents,
    position_encoding,
    summed_area_table,
)
from mslib.losses.scale_consistency import (
    DEFAULT_LAMBDAS,
    correlation_matrix,
    inter_scale_loss,
    intra_scale_loss,
    joint_loss,
    pseudo_label_ce,
)
from mslib.losses.structure import (
    as_target_map,
    structure_loss,
    structure_weight,
    weighted_bce,
    weighted_iou,
)

__all__ = [
    # structure
    "structure_weight",
    "weighted_bce",
    "weighted_iou",
    "structure_loss",
    "as_target_map",
    # lossnet
    "VGG_CUTS",
    "VGG_LAYER_NAMES",
    "LossNet",
    "M2SNetLoss",
    # dice
    "soft_dice_loss",
    "dice_bce",
    "dice_ce",
    # scale_consistency
    "DEFAULT_LAMBDAS",
    "pseudo_label_ce",
    "inter_scale_loss",
    "correlation_matrix",
    "intra_scale_loss",
    "joint_loss",
    # contrastive
    "ProjectionHead",
    "CrossProjector",
    "balanced_supcon_loss",
    "official_supcon",
    "legacy_label_permutation",
    "contrast_labels",
    "cross_contrastive_loss",
    "official_block_coverage",
    "features_by_scale",
    "MultiScaleContrast",
    "SAMPLINGS",
    # cross_teaching
    "SSL4MIS_SMOOTH",
    "ssl4mis_dice_loss",
    "supervised_loss",
    "cps_loss",
    "sigmoid_rampup",
    "cps_weight",
    "cross_teaching_losses",
    # dragsaw
    "dragsaw_loss",
    "cosine_similarity_matrix",
    "PatchDragsawLoss",
    # patch_affinity
    "one_hot_mask",
    "summed_area_table",
    "box_counts",
    "foreground_ratios",
    "normalize_ratios",
    "patch_boxes",
    "grid_positions",
    "feature_centres",
    "affinity",
    "center_label_affinity",
    "dice_affinity",
    "patch_contents",
    "position_encoding",
    "AFFINITIES",
    "PHI_NORMS",
]
