"""Tests of top-k images, value ranges and histograms (builder/dissect/topk.py)."""

from __future__ import annotations

import numpy as np
import torch

from builder.dissect.topk import Histogram, TopK, ValueRange


def _batches(n=23, units=3, size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, units, size, size, generator=g)
    maps[5] = maps[2]  # exact ties in score: the lower index must win
    indices = torch.arange(n) * 10 + 7
    return maps, indices


def test_topk_matches_sorting_and_breaks_ties_by_index():
    maps, indices = _batches()
    scores = maps.amax((2, 3))
    top = TopK(3, 5, (4, 4))
    for part in torch.arange(len(maps)).split(6):
        top.add(scores[part], indices[part], maps[part])
    result = top.result()
    for unit in range(3):
        order = sorted(range(len(maps)), key=lambda i: (-scores[i, unit].item(), i))[:5]
        assert result["index"][unit].tolist() == indices[order].tolist()
        assert np.array_equal(result["score"][unit], scores[order, unit].numpy())
        assert np.array_equal(result["maps"][unit], maps[order, unit].numpy().astype(np.float16))
    assert result["maps"].dtype == np.float16


def test_topk_merge_equals_one_stream_and_round_trips():
    maps, indices = _batches()
    scores = maps.amax((2, 3))
    whole, a, b = TopK(3, 5, (4, 4)), TopK(3, 5, (4, 4)), TopK(3, 5, (4, 4))
    whole.add(scores, indices, maps)
    a.add(scores[:9], indices[:9], maps[:9])
    b.add(scores[9:], indices[9:], maps[9:])
    restored = TopK(3, 5, (4, 4))
    restored.load_state_dict(b.state_dict())
    restored.merge(a)  # the other order: ties still go to the lower index
    for key, value in whole.result().items():
        assert np.array_equal(value, restored.result()[key])


def test_range_and_histogram():
    maps, _ = _batches()
    bad = torch.zeros_like(maps, dtype=torch.bool)
    bad[0, 0, 0, 0] = True
    maps[0, 0, 0, 0] = 1e9  # ignored through ``bad``
    span = ValueRange(3)
    span.add(maps[:10], bad[:10])
    other = ValueRange(3)
    other.add(maps[10:], bad[10:])
    span.merge(other)
    clean = maps.clone()
    clean[bad] = float("nan")
    flat = clean.transpose(0, 1).reshape(3, -1).numpy()
    assert np.allclose(span.low.numpy(), np.nanmin(flat, 1))
    assert np.allclose(span.high.numpy(), np.nanmax(flat, 1))
    hist = Histogram(3, 8, span.low, span.high)
    hist.add(maps[:10], bad[:10])
    second = Histogram(3, 8, span.low, span.high)
    second.add(maps[10:], bad[10:])
    hist.merge(second)
    result = hist.result()
    for unit in range(3):
        row = flat[unit][~np.isnan(flat[unit])]
        expected, _ = np.histogram(row, bins=result["edges"][unit].astype(np.float64))
        assert abs(result["counts"][unit] - expected).sum() <= 2  # edge rounding only
        assert result["counts"][unit].sum() == row.size
    assert result["edges"].shape == (3, 9) and result["counts"].dtype == np.int64


def test_histogram_of_a_constant_or_empty_unit():
    hist = Histogram(2, 4, torch.tensor([2.0, float("inf")]), torch.tensor([2.0, float("-inf")]))
    hist.add(torch.full((1, 2, 2, 2), 2.0))
    counts = hist.result()["counts"]
    assert counts[0].sum() == 4 and counts[1].sum() == 4
