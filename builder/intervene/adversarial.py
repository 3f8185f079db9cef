"""Targeted adversarial attacks, and which units of a layer they move.

Two attacks turn one image into a chosen class: projected gradient descent (PGD, L-infinity
ball, Madry et al. 2018) and Carlini-Wagner L2 (Carlini & Wagner 2017: Adam in tanh space on
``||delta||^2 + c * max(max_{j != t} Z_j - Z_t, -kappa)``, a binary search over ``c``). Both
work on images in [0, 1]; ``classifier`` is any callable from such images to logits (normalise
inside it).

``unit_changes`` measures how the attack moved each unit of a layer (the change of its mean
activation), and ``change_overlap`` asks the PNAS question: are the units the attack lowers
most the ones most important to the source class, and the units it raises most the ones most
important to the target class?
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.layers import first_tensor
from ..models.trace import LayerTrace
from .metrics import spearman

__all__ = ["AttackResult", "change_overlap", "cw_l2_attack", "pgd_attack", "unit_changes"]

Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttackResult:
    """An adversarial image and how it fared."""

    image: torch.Tensor  # [1, 3, S, S] in [0, 1]
    success: bool  # the classifier now predicts the target
    prediction: int  # the classifier's prediction on ``image``
    l2: float  # ||image - original||_2 (pixels in [0, 1])
    linf: float  # max |image - original|
    steps: int  # gradient steps taken


def _logits(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    out = first_tensor(classifier(images))
    if out is None:
        raise TypeError("the classifier returned no tensor")
    return out


def _result(classifier: Classifier, original: torch.Tensor, adversarial: torch.Tensor,
            target: int, steps: int) -> AttackResult:
    with torch.no_grad():
        prediction = int(_logits(classifier, adversarial).argmax(dim=1)[0])
    delta = (adversarial - original).flatten()
    return AttackResult(image=adversarial.detach(), success=prediction == target,
                        prediction=prediction, l2=float(delta.norm()),
                        linf=float(delta.abs().max()), steps=steps)


def pgd_attack(classifier: Classifier, image: torch.Tensor, target: int, eps: float = 8 / 255,
               step_size: float | None = None, steps: int = 40) -> AttackResult:
    """Targeted PGD in the L-infinity ball of radius ``eps``; stops early once it succeeds."""
    original = image.detach()
    step_size = eps / 4 if step_size is None else step_size
    x = original.clone()
    goal = torch.tensor([target], device=image.device)
    taken = 0
    while True:  # one forward pass per step: it both checks success and gives the gradient
        x.requires_grad_(True)
        logits = _logits(classifier, x)
        if int(logits.argmax(dim=1)[0]) == target or taken == steps:
            break
        loss = nn.functional.cross_entropy(logits, goal)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = x - step_size * grad.sign()
            x = (original + (x - original).clamp(-eps, eps)).clamp(0.0, 1.0)
        taken += 1
    return _result(classifier, original, x.detach(), target, taken)


def cw_l2_attack(classifier: Classifier, image: torch.Tensor, target: int, steps: int = 100,
                 lr: float = 0.01, c: float = 1.0, kappa: float = 0.0,
                 search_steps: int = 3) -> AttackResult:
    """Targeted Carlini-Wagner L2: the smallest successful perturbation over a search on ``c``.

    Each search step runs Adam for at most ``steps`` steps (stopping early once the loss stops
    falling); ``c`` is halved towards the last failure after a success, else multiplied by 10.
    """
    original = image.detach()
    w0 = torch.atanh((original * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    low, high = 0.0, float("inf")
    best: torch.Tensor | None = None
    best_l2 = float("inf")
    last = original
    total = 0
    for _ in range(max(1, search_steps)):
        w = w0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=lr)
        succeeded = False
        previous = float("inf")
        for step in range(steps):
            x = (torch.tanh(w) + 1) / 2
            logits = _logits(classifier, x)[0]
            if int(logits.argmax()) == target:  # x (before this step) is adversarial
                succeeded = True
                l2 = float((x - original).detach().norm())
                if l2 < best_l2:
                    best, best_l2 = x.detach().clone(), l2
            other = torch.cat([logits[:target], logits[target + 1:]]).max()
            margin = torch.clamp(other - logits[target], min=-kappa)
            loss = ((x - original) ** 2).sum() + c * margin
            if step % max(1, steps // 10) == 0:  # abort early when the loss stalls
                value = float(loss.detach())
                if value > 0.9999 * previous:
                    break
                previous = value
            (w.grad,) = torch.autograd.grad(loss, w)  # no gradients into the model's parameters
            optimizer.step()
            total += 1
            last = x.detach()
        if succeeded:
            high = min(high, c)
        else:
            low = max(low, c)
        c = (low + high) / 2 if high < float("inf") else c * 10
    return _result(classifier, original, best if best is not None else last, target, total)


@torch.no_grad()
def unit_changes(model: nn.Module, layer: str, images: torch.Tensor,
                 adversarial: torch.Tensor) -> torch.Tensor:
    """float [units]: change of each unit's mean activation from ``images`` to ``adversarial``.

    Both are model inputs (already normalised); the mean is over images and spatial positions.
    """
    with LayerTrace(model, [layer], stop=True) as trace:
        trace.run(images)
        before = trace[layer].float().mean(dim=(0, 2, 3))
        trace.run(adversarial)
        after = trace[layer].float().mean(dim=(0, 2, 3))
    return after - before


def change_overlap(change: np.ndarray, source_order: Sequence[int], target_order: Sequence[int],
                   source_importance: np.ndarray, target_importance: np.ndarray,
                   k: int = 10) -> dict:
    """How the units an attack moves most relate to the source and target classes' top-k units.

    ``*_order`` are the units by importance to each class (most important first),
    ``*_importance`` the accuracy drop each unit's removal causes. Overlaps come with the
    number expected for k random units (``k * |set| / units``).
    """
    change = np.asarray(change, dtype=np.float64)
    units = len(change)
    k = min(k, units)
    source, target = set(int(u) for u in source_order[:k]), set(int(u) for u in target_order[:k])
    order = np.argsort(change, kind="stable")
    lowered = [int(u) for u in order[:k]]
    raised = [int(u) for u in order[::-1][:k]]
    moved = [int(u) for u in np.argsort(-np.abs(change), kind="stable")[:k]]
    either = source | target
    return {
        "k": k,
        "lowered": lowered,
        "raised": raised,
        "moved": moved,
        "lowered_in_source_topk": len(set(lowered) & source),
        "raised_in_target_topk": len(set(raised) & target),
        "moved_in_either_topk": len(set(moved) & either),
        "expected_random": k * k / units,
        "expected_random_either": k * len(either) / units,
        "spearman_lowering_vs_source_importance": spearman(-change, source_importance),
        "spearman_raising_vs_target_importance": spearman(change, target_importance),
    }
