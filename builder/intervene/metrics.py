"""Classification metrics from confusion matrices, vectorised over many ablations at once.

A confusion matrix here is ``[..., n, m]``: rows are the n true classes, columns the predicted
ones; ``m >= n`` and columns ``n..m-1`` collect predictions of model outputs that are not among
the n evaluated classes ("other"). Leading dimensions index ablations.

Balanced accuracy of class c is that of the binary task "c vs the rest", from the argmax
predictions: ``(recall + true-negative rate) / 2``; chance is 0.5. A class without positive
(or without negative) images has no balanced accuracy: NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["accuracy", "balanced_accuracy", "confusion_matrices", "confusion_matrix", "spearman"]


def confusion_matrices(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int,
                       num_predictions: int | None = None) -> torch.Tensor:
    """Confusion matrices [K, n, m] (int64) of labels [B] against predictions [K, B].

    Labels are in ``0..n-1``; predictions in ``0..m-1`` (m = ``num_predictions``, default n).
    One ``bincount`` for all K ablations.
    """
    m = num_classes if num_predictions is None else num_predictions
    predictions = predictions.reshape(-1, labels.shape[0]).long()
    k = predictions.shape[0]
    cell = labels.long().reshape(1, -1) * m + predictions
    cell = cell + torch.arange(k, device=cell.device).reshape(-1, 1) * (num_classes * m)
    counts = torch.bincount(cell.reshape(-1), minlength=k * num_classes * m)
    return counts.reshape(k, num_classes, m)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int,
                     num_predictions: int | None = None) -> torch.Tensor:
    """The confusion matrix [n, m] (int64) of labels [B] against predictions [B]."""
    return confusion_matrices(labels, predictions[None], num_classes, num_predictions)[0]


def _as_float(confusion: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    return np.asarray(confusion, dtype=np.float64)


def balanced_accuracy(confusion: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-class balanced accuracy [..., n] (c vs the rest) of confusion matrices [..., n, m]."""
    conf = _as_float(confusion)
    n = conf.shape[-2]
    true_pos = np.diagonal(conf[..., :, :n], axis1=-2, axis2=-1)
    positives = conf.sum(axis=-1)  # images of class c
    predicted = conf[..., :n].sum(axis=-2)  # images predicted as c
    total = conf.sum(axis=(-2, -1))[..., None]
    negatives = total - positives
    true_neg = negatives - (predicted - true_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = true_pos / positives
        specificity = true_neg / negatives
    return (recall + specificity) / 2.0


def accuracy(confusion: np.ndarray | torch.Tensor) -> np.ndarray:
    """Overall accuracy [...] (correct / all images) of confusion matrices [..., n, m]."""
    conf = _as_float(confusion)
    n = conf.shape[-2]
    correct = np.trace(conf[..., :, :n], axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return correct / conf.sum(axis=(-2, -1))


def spearman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float | None:
    """Spearman rank correlation of two equally long vectors (average ranks for ties)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size < 2:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / denominator) if denominator else None


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.reshape(-1), weights=ranks)
    return sums[inverse.reshape(-1)] / counts[inverse.reshape(-1)]
