"""Tests of exact quantiles and the mergeable sampling sketch (builder/dissect/quantile.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from builder.dissect.quantile import LEVELS, TailQuantile, needed_top, sample_levels, \
    upper_quantile


@pytest.mark.parametrize("n", [1, 2, 3, 10, 199, 200, 1001])
@pytest.mark.parametrize("q", [0.005, 0.01, 0.3, 0.9])
def test_upper_quantile_matches_numpy(n, q):
    values = torch.from_numpy(np.random.default_rng(n).normal(size=(3, n)).astype(np.float32))
    expected = np.quantile(values.numpy().astype(np.float64), 1 - q, axis=1)
    np.testing.assert_allclose(upper_quantile(values, q).numpy(), expected, rtol=1e-6)
    assert needed_top(n, q) >= 1 and needed_top(0, q) == 0


def _stream(values: np.ndarray, per_image: int):
    """Chunks of a [U, n] stream as (values [U, k], levels [k]) with per-image levels."""
    n = values.shape[1]
    images = n // per_image
    levels = sample_levels(np.arange(images), per_image, seed=3).reshape(-1)
    for first in range(0, images, 7):
        cols = slice(first * per_image, min(images, first + 7) * per_image)
        yield torch.from_numpy(values[:, cols]), torch.from_numpy(levels[cols])


def test_exact_tail_quantile_matches_numpy_and_skips_nonfinite():
    rng = np.random.default_rng(0)
    values = rng.standard_exponential((4, 60_000)).astype(np.float32)
    values[1, ::97] = np.nan
    values[2, ::50] = np.inf
    values[3, :5] = -np.inf
    q = 0.01
    sketch = TailQuantile(4, q, capacity=needed_top(60_000, q) * 2, expected_count=60_000)
    for chunk, levels in _stream(values, 1000):
        sketch.update(chunk, levels)
    got, determined = sketch.quantile_values()
    for unit in range(4):
        finite = values[unit][np.isfinite(values[unit])].astype(np.float64)
        assert got[unit].item() == pytest.approx(np.quantile(finite, 1 - q), rel=1e-6)
    assert bool(determined.all()) and sketch.exact and sketch.rate == 1.0
    assert torch.all(sketch.rel_error() == 0)


def test_sample_levels_are_deterministic_and_geometric():
    levels = sample_levels(np.arange(200), 5000, seed=1)
    assert levels.shape == (200, 5000) and levels.dtype == np.uint8
    assert np.array_equal(levels, sample_levels(np.arange(200), 5000, seed=1))
    assert not np.array_equal(levels, sample_levels(np.arange(200), 5000, seed=2))
    assert np.array_equal(levels[10:20], sample_levels(np.arange(10, 20), 5000, seed=1))
    for j in range(1, 8):
        assert np.mean(levels >= j) == pytest.approx(2.0 ** -j, rel=0.05)
    assert levels.max() < LEVELS


def _distributions(n: int, rng) -> np.ndarray:
    return np.stack([
        rng.normal(size=n),
        rng.lognormal(sigma=1.5, size=n),
        rng.standard_exponential(n),
        rng.uniform(size=n),
        np.where(rng.uniform(size=n) < 0.9, rng.normal(size=n), 8 + rng.normal(size=n)),
        np.sort(rng.normal(size=n)),  # an adversarial order: ascending
        np.maximum(rng.normal(size=n), 0.0),  # ReLU: half the values tie at 0
        np.round(rng.normal(size=n) * 4) / 4,  # coarse: heavy ties everywhere
    ]).astype(np.float32)


def test_sampled_sketch_rank_error_is_within_the_documented_bound():
    n, q, capacity = 2_000_000, 0.005, 8192
    values = _distributions(n, np.random.default_rng(7))
    sketch = TailQuantile(len(values), q, capacity, seed=3, expected_count=n)
    assert sketch.rate_level > 0  # the tail (10,000 values) does not fit: it samples
    for chunk, levels in _stream(values, 10_000):
        sketch.update(chunk, levels)
    estimate, determined = sketch.quantile_values()
    bound = sketch.rel_error(0.999).numpy()
    assert bool(determined.all())
    assert np.all(bound < 0.15) and np.all(sketch.tail_samples().numpy() > capacity / 4)
    for unit, row in enumerate(values):
        t = estimate[unit].item()
        above, at_or_above = np.mean(row > t), np.mean(row >= t)  # the rank interval of t
        # some rank of t lies within q * (1 +- bound)
        assert above <= q * (1 + bound[unit]) and at_or_above >= q * (1 - bound[unit]), unit


@pytest.mark.parametrize("capacity", [4000, 600])  # exact, then sampled
def test_merge_equals_the_concatenated_stream(capacity):
    rng = np.random.default_rng(1)
    n, q = 40_000, 0.02
    values = np.concatenate([rng.normal(size=(3, n // 2)), rng.normal(3, 1, (3, n // 2))],
                            axis=1).astype(np.float32)
    chunks = list(_stream(values, 1000))

    def sketch():
        return TailQuantile(3, q, capacity, seed=5, expected_count=n)

    whole, first, second = sketch(), sketch(), sketch()
    for chunk, levels in chunks:
        whole.update(chunk, levels)
    for chunk, levels in chunks[: len(chunks) // 2]:
        first.update(chunk, levels)
    for chunk, levels in chunks[len(chunks) // 2:]:
        second.update(chunk, levels)
    # a checkpoint round trip on the way, through torch.save with weights_only loading
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    restored = sketch()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.merge(second)
    assert torch.equal(restored.quantile_threshold(), whole.quantile_threshold())
    assert restored.rate_level == whole.rate_level
    assert torch.equal(restored.counts(), whole.counts())
    assert (capacity == 4000) == whole.exact


def test_settings_must_match():
    with pytest.raises(ValueError):
        TailQuantile(2, 1.5, 100)
    with pytest.raises(ValueError):
        TailQuantile(2, 0.1, 100).merge(TailQuantile(2, 0.1, 200))
    with pytest.raises(ValueError):
        TailQuantile(2, 0.1, 100).load_state_dict(TailQuantile(3, 0.1, 100).state_dict())


def test_empty_units_get_an_infinite_threshold():
    sketch = TailQuantile(2, 0.1, 64)
    sketch.update(torch.tensor([[1.0, 2.0, 3.0], [float("nan")] * 3]))
    got = sketch.quantile_threshold()
    assert got[0].item() == pytest.approx(np.quantile([1.0, 2.0, 3.0], 0.9))
    assert got[1].item() == float("inf")
