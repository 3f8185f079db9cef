"""Tests of upsampling, thresholded masks and IoU counts (builder/dissect/iou.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from builder.dissect import iou as iou_mod
from builder.dissect import kernels
from builder.dissect.iou import IoUCounts, Upsampler, dedupe_image_labels, dedupe_labels, \
    label_units, summarize_layer
from builder.dissect.quantile import sample_levels, upper_quantile

GEOMETRIES = [(7, 112), (7, 224), (14, 112), (56, 112), (7, 100), (5, 5), (13, 64), (3, 97),
              (1, 8), (2, 3)]


def _maps(kind: str, h: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(3, 6, h, h, generator=g)
    if kind == "relu":
        maps = maps.clamp(min=0)
    elif kind == "flat":  # values within rounding of each other: the flat-segment path
        maps = 1 + 1e-7 * torch.randn(3, 6, h, h, generator=g).round()
    return maps


def _key(b, u, p):
    return torch.sort(b * 10**9 + u * 10**6 + p).values


@pytest.mark.parametrize("h,H", GEOMETRIES)
def test_upsampling_matches_interpolate(h, H):
    maps = _maps("randn", h)
    expected = F.interpolate(maps, size=(H, H), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(Upsampler((h, h), (H, H))(maps), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("h,H", [(7, 112), (14, 56), (7, 100), (5, 5), (3, 97), (1, 8)])
@pytest.mark.parametrize("kind", ["randn", "relu", "flat"])
@pytest.mark.parametrize("path", [0.0, float("inf")])  # dense, segments
def test_pixels_above_threshold_are_exact_on_every_path(monkeypatch, h, H, kind, path):
    monkeypatch.setattr(iou_mod, "SPARSE_FRACTION", path)
    up = Upsampler((h, h), (H, H))
    maps = _maps(kind, h)
    s = up(maps)
    thresholds = upper_quantile(s.transpose(0, 1).reshape(6, -1), 0.02)
    expected = (s.flatten(2) > thresholds[None, :, None]).nonzero(as_tuple=True)
    assert torch.equal(_key(*up.above(maps, thresholds)), _key(*expected))
    # units no value can pass are left out, the others' pixels keep their unit numbers
    idle = thresholds.clone()
    idle[[1, 4]] = torch.finfo(torch.float32).max
    idle[2] = float("inf")
    kept = ~torch.isin(expected[1], torch.tensor([1, 2, 4]))
    assert torch.equal(_key(*up.above(maps, idle)), _key(*(e[kept] for e in expected)))


@pytest.mark.parametrize("h,H,kind,limit,min_level", [
    (7, 56, "randn", 5, 0), (7, 56, "relu", 300, 1), (7, 56, "flat", 10**6, 0),
    (14, 56, "randn", 10**6, 1), (3, 97, "relu", 5, 1), (3, 97, "flat", 300, 0),
    (5, 5, "randn", 5, 1), (5, 5, "relu", 10**6, 0)])
@pytest.mark.parametrize("kernel", [True, False])
def test_tail_keeps_every_sampled_value_above_its_floor(monkeypatch, h, H, kind, limit,
                                                        min_level, kernel):
    monkeypatch.setattr(kernels, "ENABLED", kernel)
    up = Upsampler((h, h), (H, H))
    maps = _maps(kind, h, seed=1)
    levels = torch.from_numpy(sample_levels(np.arange(3), H * H, 0))
    start = torch.full((6,), float("-inf"))
    values, value_levels, floor = up.tail(maps, start, limit, levels, min_level)
    flat = up(maps).transpose(0, 1).reshape(6, -1)
    sampled = levels.reshape(-1) >= min_level
    for unit in range(6):
        pool = flat[unit][sampled]
        above = torch.sort(pool[pool > floor[unit]], descending=True).values
        got = values[unit]
        assert torch.equal(torch.sort(got[got > floor[unit]], descending=True).values, above)
        assert bool((value_levels[unit][got > float("-inf")] >= min_level).all())
        if floor[unit] > float("-inf"):  # the floor is justified by enough values
            assert int((pool >= floor[unit]).sum()) >= limit
        top = torch.sort(pool, descending=True).values[:limit]
        assert torch.equal(torch.sort(got, descending=True).values[:len(top)][top > floor[unit]],
                           top[top > floor[unit]])


def test_excluded_pixels_never_pass():
    up = Upsampler((4, 4), (8, 8))
    maps = torch.ones(1, 2, 4, 4)
    excluded = torch.zeros(1, 2, 64, dtype=torch.bool)
    excluded[0, 0, :10] = True
    b, u, p = up.above(maps, torch.tensor([0.5, 0.5]), excluded)
    assert len(b) == 2 * 64 - 10 and not bool(((u == 0) & (p < 10)).any())


def test_dedupe():
    labels = torch.tensor([[[[1, 2]], [[1, 3]], [[2, 2]]]])  # [1, 3 layers, 1, 2]
    assert dedupe_labels(labels).tolist() == [[[[1, 2]], [[0, 3]], [[2, 0]]]]
    image = torch.tensor([[7, 7, 0, 9], [3, 0, 0, 0]])
    assert sorted(dedupe_image_labels(image)[0].tolist()) == [0, 0, 7, 9]


def reference_iou(mask, labels, image_labels, has, category, aware):
    """Loops: mask [N, U, P] bool, labels [N, L, P], image_labels [N, M], has [N, C]."""
    n, units, pixels = mask.shape
    columns = len(category)
    out = np.zeros((units, columns))
    for k in range(units):
        for c in range(1, columns):
            if category[c] < 0:
                continue
            inter = union = 0
            for i in range(n):
                if aware and not has[i, category[c]]:
                    continue
                lab = (labels[i] == c).any(0) | np.full(pixels, c in image_labels[i])
                inter += int((mask[i, k] & lab).sum())
                union += int((mask[i, k] | lab).sum())
            out[k, c] = inter / union if union else 0.0
    return out


@pytest.mark.parametrize("aware", [True, False])
def test_iou_counts_match_loops(aware):
    rng = np.random.default_rng(0)
    n, units, layers, pixels = 9, 4, 3, 30
    category = np.array([-1, 0, 0, 1, 1, -1, 2, 2])  # ids 1-4 pixel, 6-7 image, 5 unused
    labels = rng.choice([0, 1, 2, 3, 4], size=(n, layers, pixels))
    labels[:, 2] = np.where(rng.random((n, pixels)) < 0.5, labels[:, 1], labels[:, 2])  # repeats
    image_labels = rng.choice([0, 6, 7], size=(n, 3))
    has = rng.random((n, 3)) < 0.7
    labels[~has[:, 0]] = np.where(np.isin(labels[~has[:, 0]], [1, 2]), 0, labels[~has[:, 0]])
    labels[~has[:, 1]] = np.where(np.isin(labels[~has[:, 1]], [3, 4]), 0, labels[~has[:, 1]])
    image_labels[~has[:, 2]] = 0
    mask = rng.random((n, units, pixels)) < 0.3
    mask[:, 3] = False  # a silent unit
    counts = IoUCounts(units, len(category), 3)
    for part in (slice(0, 4), slice(4, 9)):  # two batches
        b, u, p = torch.from_numpy(mask[part]).nonzero(as_tuple=True)
        counts.add(b, u, p, dedupe_labels(torch.from_numpy(labels[part]).int()),
                   dedupe_image_labels(torch.from_numpy(image_labels[part]).int()),
                   torch.from_numpy(has[part]))
    expected = reference_iou(mask, labels, image_labels, has, category, aware)
    np.testing.assert_allclose(counts.iou(category, aware), expected, atol=1e-7)
    assert np.allclose(counts.coverage(), mask.mean((0, 2)))
    # merging the counts of the two halves gives the same
    first, second = IoUCounts(units, len(category), 3), IoUCounts(units, len(category), 3)
    for target, part in ((first, slice(0, 4)), (second, slice(4, 9))):
        b, u, p = torch.from_numpy(mask[part]).nonzero(as_tuple=True)
        target.add(b, u, p, dedupe_labels(torch.from_numpy(labels[part]).int()),
                   dedupe_image_labels(torch.from_numpy(image_labels[part]).int()),
                   torch.from_numpy(has[part]))
    restored = IoUCounts(units, len(category), 3)
    restored.load_state_dict(first.state_dict())
    restored.merge(second)
    assert np.array_equal(restored.iou(category, aware), counts.iou(category, aware))


def test_labels_and_summary():
    iou = np.array([[0.0, 0.1, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0], [0.0, 0.05, 0.01, 0.02]],
                   dtype=np.float32)
    labels = label_units(iou)
    assert labels[0].concept_ids == (2, 3, 1)  # ties go to the lower id
    assert labels[1].concept_ids == (0, 0, 0) and labels[1].ious == (0.0, 0.0, 0.0)
    assert labels[2].concept_ids[0] == 1
    summary = summarize_layer(labels, ["object", "part"], np.array([-1, 0, 1, 1]), 0.04)
    assert summary == {"detectors": {"object": 1, "part": 1},
                       "unique_detectors": {"object": 1, "part": 1}}


@pytest.mark.parametrize("h,H", [(7, 112), (7, 56), (5, 21), (3, 97)])
@pytest.mark.parametrize("kind", ["randn", "relu"])
@pytest.mark.parametrize("path", [0.0, float("inf")])  # dense, segments
def test_pixels_left_out_at_a_ceiling_are_counted(monkeypatch, h, H, kind, path):
    """above() with ceilings gives every pixel between the threshold and the ceiling, and the
    pixels at or above the ceiling either as values or in ``skipped``, never both."""
    monkeypatch.setattr(iou_mod, "SPARSE_FRACTION", path)
    up = Upsampler((h, h), (H, H))
    maps = _maps(kind, h)
    s = up(maps).flatten(2)
    units = maps.shape[1]
    thresholds = upper_quantile(s.transpose(0, 1).reshape(units, -1), 0.1)
    ceilings = upper_quantile(s.transpose(0, 1).reshape(units, -1), 0.03)
    ceilings[0] = float("inf")  # a unit without a ceiling: everything given
    skipped = torch.zeros(units, dtype=torch.int64)
    _, u, _, v = up.above(maps, thresholds, values=True, positions=False, ceilings=ceilings,
                          skipped=skipped)
    for k in range(units):
        values, given = s[:, k].reshape(-1), v[u == k]
        assert bool((given > thresholds[k]).all())
        inside = (values > thresholds[k]) & (values < ceilings[k])
        assert int((given < ceilings[k]).sum()) == int(inside.sum())
        assert int((given >= ceilings[k]).sum()) + int(skipped[k]) == \
            int((values >= ceilings[k]).sum())
    assert skipped[0] == 0
    if path and H // h >= 8:  # long segments: most pixels above the ceiling are only counted
        assert int(skipped[1:].sum()) > 0
