"""Interventions on units: ablation (zero, set or scale units), classifier sweeps, attacks."""

from .ablation import MODES, Ablation, BatchedAblation, apply_unit_masks, repeat_batch, unit_mask
from .adversarial import AttackResult, change_overlap, cw_l2_attack, pgd_attack, unit_changes
from .metrics import accuracy, balanced_accuracy, confusion_matrices, confusion_matrix, spearman
from .runner import ABLATION_VERSION, AblationOptions, run_ablation
from .sweep import (STRATEGIES, ClassMap, CurveResult, Evaluation, LayerEvaluator,
                    RandomCurves, SweepResult, curve_points, important_unit_counts, match_classes, random_curves,
                    random_unit_sets, rank_units, removal_curves, science_check,
                    single_unit_sweep)

__all__ = [
    "ABLATION_VERSION",
    "Ablation",
    "AblationOptions",
    "AttackResult",
    "BatchedAblation",
    "ClassMap",
    "CurveResult",
    "Evaluation",
    "LayerEvaluator",
    "MODES",
    "RandomCurves",
    "STRATEGIES",
    "SweepResult",
    "accuracy",
    "apply_unit_masks",
    "balanced_accuracy",
    "change_overlap",
    "confusion_matrices",
    "confusion_matrix",
    "curve_points",
    "cw_l2_attack",
    "important_unit_counts",
    "match_classes",
    "pgd_attack",
    "random_curves",
    "random_unit_sets",
    "rank_units",
    "removal_curves",
    "repeat_batch",
    "run_ablation",
    "science_check",
    "single_unit_sweep",
    "spearman",
    "unit_changes",
    "unit_mask",
]
