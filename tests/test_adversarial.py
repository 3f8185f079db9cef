"""Targeted attacks (PGD, Carlini-Wagner L2) and how the units they move are compared."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from builder.intervene import change_overlap, cw_l2_attack, pgd_attack, unit_changes


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight over a busy machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(3, 6, 3, padding=1)), ("units", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 4)),
    ])).eval()
    with torch.no_grad():
        model.fc.weight.mul_(30.0)  # confident logits, as a trained classifier's
    return model


@pytest.fixture
def setup():
    model = _classifier()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(image)[0]
    target = int(logits.argsort(descending=True)[1])  # the runner-up class
    return model, image, target


def test_pgd_reaches_the_target_inside_the_ball(setup):
    model, image, target = setup
    result = pgd_attack(model, image, target, eps=0.5, steps=200)
    assert result.success and result.prediction == target
    assert result.linf <= 0.5 + 1e-6 and 0 < result.steps <= 200
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    assert int(model(result.image).argmax()) == target
    assert all(p.grad is None for p in model.parameters())


def test_carlini_wagner_reaches_the_target_with_a_small_perturbation(setup):
    model, image, target = setup
    result = cw_l2_attack(model, image, target, steps=100, lr=0.05, search_steps=3)
    assert result.success and result.prediction == target
    assert 0 < result.l2 < float(image.numel()) ** 0.5
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    assert all(p.grad is None for p in model.parameters())
    pgd = pgd_attack(model, image, target, eps=1.0, steps=200)
    assert result.l2 <= pgd.l2 + 1e-6  # CW looks for the smallest L2 perturbation


def test_unit_changes_measure_the_mean_activation_change():
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(3, 3, 1, bias=False)),
                                       ("units", nn.ReLU())])).eval()
    with torch.no_grad():
        model.conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    image = torch.full((1, 3, 4, 4), 0.2)
    changed = image.clone()
    changed[:, 0] += 0.5
    changed[:, 2] -= 0.1
    change = unit_changes(model, "units", image, changed)
    torch.testing.assert_close(change, torch.tensor([0.5, 0.0, -0.1]))


def test_change_overlap_against_the_classes_top_units():
    change = np.array([-3.0, 2.5, 0.1, -0.2, 4.0, 0.0])
    source_order = [0, 3, 2, 1, 4, 5]  # units most important to the source class first
    target_order = [4, 2, 1, 0, 3, 5]
    importance_s = np.array([0.5, 0.0, 0.1, 0.3, -0.1, 0.0])
    importance_t = np.array([0.0, 0.2, 0.3, 0.0, 0.6, 0.0])
    result = change_overlap(change, source_order, target_order, importance_s, importance_t, k=2)
    assert result["lowered"] == [0, 3] and result["raised"] == [4, 1]
    assert result["moved"] == [4, 0]
    assert result["lowered_in_source_topk"] == 2  # {0, 3} & {0, 3}
    assert result["raised_in_target_topk"] == 1  # {4, 1} & {4, 2}
    assert result["moved_in_either_topk"] == 2  # {4, 0} & {0, 3, 4, 2}
    assert result["expected_random"] == pytest.approx(2 * 2 / 6)
    assert result["expected_random_either"] == pytest.approx(2 * 4 / 6)
    assert result["spearman_lowering_vs_source_importance"] > 0.5
