"""The threshold search finds numpy's exact quantile of the upsampled maps."""

import numpy as np
import pytest
import torch

from builder.dissect.iou import Upsampler
from builder.dissect.search import ThresholdSearch, float_keys, key_floats


def _search(maps: torch.Tensor, out: tuple[int, int], q: float, parts: int = 1,
            excluded: torch.Tensor | None = None, ceilings: bool = True,
            tamper=None, kernel: bool = False) -> ThresholdSearch:
    """Run the search over ``maps`` in batches of 7, optionally split over ``parts`` merged
    searches per stage, with the sweeps' ceilings (values left out and counted) as the
    runner does, or without (every value above the floor given), or (``kernel``) by
    ``add_maps`` as the runner does (the compiled kernel, where it applies);
    ``tamper(search)`` may change the search after ``start``."""
    up = Upsampler(maps.shape[2:], out)
    searches = [ThresholdSearch(maps.shape[1], q, up) for _ in range(parts)]
    batches = list(range(0, maps.shape[0], 7))

    def part_of(i: int) -> ThresholdSearch:
        return searches[i % parts]

    def merged() -> ThresholdSearch:
        total = searches[0]
        for other in searches[1:]:
            total.merge(other)
        return total

    for i, b in enumerate(batches):
        ex = None if excluded is None else excluded[b:b + 7]
        part_of(i).add_bounds(maps[b:b + 7], ex)
    search = merged()
    search.start()
    if tamper is not None:
        tamper(search)
    while not search.done_all:
        # the other parts restart from the merged state, as other machines would
        state = search.state_dict()
        searches = [search] + [ThresholdSearch(maps.shape[1], q, up) for _ in range(parts - 1)]
        for other in searches[1:]:
            other.load_state_dict(state)
            other.hist.zero_()
            other.above.zero_()
            other.images = 0
            other.low_hist.zero_(), other.high_hist.zero_(), other.mean_hist.zero_()
            other.excluded.zero_()
        floor = search.sweep_thresholds()
        for i, b in enumerate(batches):
            ex = None if excluded is None else excluded[b:b + 7]
            if kernel:
                part_of(i).add_maps(maps[b:b + 7], ex)
                continue
            skipped = torch.zeros(maps.shape[1], dtype=torch.int64) if ceilings else None
            _, u, _, v = up.above(maps[b:b + 7], floor, ex, values=True, skipped=skipped,
                                  ceilings=search.sweep_ceilings() if ceilings else None)
            part_of(i).add_values(u, v, skipped)
        search = merged()
        search.end_sweep()
    return search


def _numpy_quantile(maps: torch.Tensor, out, q: float, excluded=None) -> np.ndarray:
    up = Upsampler(maps.shape[2:], out)
    dense = up(maps).flatten(2)
    result = []
    for unit in range(maps.shape[1]):
        values = dense[:, unit]
        if excluded is not None:
            values = values[~excluded[:, unit]]
        result.append(np.quantile(values.numpy().astype(np.float64), 1 - q))
    return np.asarray(result).astype(np.float32)


def test_keys_order_floats_and_invert():
    x = torch.cat([torch.randn(1000) * 10, torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3e38])])
    assert torch.equal(key_floats(float_keys(x)), x)
    ordered = torch.sort(x[x != 0]).values  # (+0.0 and -0.0 compare equal)
    keys = float_keys(ordered)
    assert bool((keys[1:] > keys[:-1]).all())
    assert float_keys(torch.tensor(-0.0)) + 1 == float_keys(torch.tensor(0.0))


@pytest.mark.parametrize("sweep", ["kernel", "ceilings", "no ceilings"])
@pytest.mark.parametrize("case", ["signed", "relu", "sparse-relu", "identity", "odd-sizes",
                                  "plateaus"])
def test_search_equals_numpy_quantile(case, sweep):
    torch.manual_seed(1)
    maps, out, q = {
        "signed": (torch.randn(40, 16, 7, 7), (56, 56), 0.005),
        "relu": (torch.randn(40, 16, 7, 7).clamp(min=0), (56, 56), 0.005),
        "sparse-relu": ((torch.randn(40, 16, 8, 8) * 3 - 4).clamp(min=0), (64, 64), 0.005),
        "identity": (torch.randn(30, 8, 16, 16), (16, 16), 0.005),
        "odd-sizes": (torch.randn(30, 8, 5, 9), (37, 23), 0.2),
        "plateaus": (torch.randint(0, 3, (30, 8, 6, 6)).float(), (48, 48), 0.05),
    }[case]
    search = _search(maps, out, q, ceilings=sweep == "ceilings", kernel=sweep == "kernel")
    assert search.inexact == 0 and search.rounds <= 4
    np.testing.assert_array_equal(search.thresholds().numpy(), _numpy_quantile(maps, out, q))


@pytest.mark.parametrize("kernel", [False, True])
@pytest.mark.parametrize("guess", ["ceiling too low", "floor too high"])
def test_wrong_guesses_are_recovered(guess, kernel):
    """The first sweep's interval is a guess from a sample; where the order statistics lie
    outside it, later sweeps search the guaranteed bracket and still find them exactly."""
    torch.manual_seed(4)
    maps = torch.randn(35, 6, 7, 7).clamp(min=-0.2)

    def tamper(search: ThresholdSearch) -> None:
        if guess == "ceiling too low":  # everything but the floor's key lies above
            search.counting[:] = True
            search.hi = search.lo + 1
        else:  # nothing lies above the floor
            search.lo = torch.full_like(search.lo, float_keys(torch.tensor(1e30)).item())
            search.hi = torch.maximum(search.hi, search.lo + 1)
        search._set_shift()

    search = _search(maps, (56, 56), 0.01, tamper=tamper, kernel=kernel)
    assert search.inexact == 0
    np.testing.assert_array_equal(search.thresholds().numpy(),
                                  _numpy_quantile(maps, (56, 56), 0.01))


def test_dead_unit_and_all_zero_thresholds():
    maps = torch.zeros(10, 3, 4, 4)
    maps[:, 1] = 2.5  # a constant unit
    search = _search(maps, (32, 32), 0.005)
    np.testing.assert_array_equal(search.thresholds().numpy(), [0.0, 2.5, 0.0])


@pytest.mark.parametrize("kernel", [False, True])
def test_merged_parts_give_the_same_thresholds(kernel):
    torch.manual_seed(2)
    maps = torch.randn(42, 12, 7, 7).clamp(min=-0.5)
    whole = _search(maps, (56, 56), 0.01, kernel=kernel).thresholds()
    split = _search(maps, (56, 56), 0.01, parts=3, kernel=kernel).thresholds()
    assert torch.equal(whole, split)


def test_excluded_pixels_are_left_out():
    torch.manual_seed(3)
    maps = torch.randn(21, 4, 7, 7)
    excluded = torch.rand(21, 4, 56 * 56) < 0.3
    search = _search(maps, (56, 56), 0.01, excluded=excluded)
    np.testing.assert_array_equal(search.thresholds().numpy(),
                                  _numpy_quantile(maps, (56, 56), 0.01, excluded))


def test_state_round_trip_and_mismatch():
    up = Upsampler((4, 4), (16, 16))
    a = ThresholdSearch(3, 0.01, up)
    a.add_bounds(torch.rand(5, 3, 4, 4))
    b = ThresholdSearch(3, 0.01, up)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.low_hist, a.low_hist) and b.images == 5
    with pytest.raises(ValueError):
        ThresholdSearch(4, 0.01, up).load_state_dict(a.state_dict())
