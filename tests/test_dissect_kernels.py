"""The compiled kernels count exactly what the PyTorch path counts, sweep by sweep."""

import pytest
import torch

from builder.dissect import kernels
from builder.dissect.iou import IoUCounts, Upsampler
from builder.dissect.search import ThresholdSearch

pytestmark = pytest.mark.skipif(not kernels._HAVE_NUMBA, reason="numba is not installed")

#: (layer grid, annotation grid): ResNet's layer4 at 224 px, odd and non-square sizes, a
#: grid upsampled by less than 2, one only widened, one a single row.
SIZES = [((7, 7), (224, 224)), ((5, 3), (37, 50)), ((14, 14), (20, 20)), ((3, 4), (3, 9)),
         ((1, 6), (8, 13))]


def _maps(size: tuple[int, int], seed: int) -> torch.Tensor:
    """Units of every kind: signed, post-ReLU (zeros), few distinct values (ties
    everywhere), constant (flat segments whose blends round either way), silent."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(9, 5, *size, generator=g)
    maps[:, 1] = maps[:, 1].clamp(min=0)
    maps[:, 2] = torch.round(maps[:, 2] * 2) / 2
    maps[:, 3] = 0.7
    maps[:, 4] = 0.0
    return maps


def _both(monkeypatch, run):
    """``run()`` with the kernels, then on the PyTorch path."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", True)  # (whatever UNITDISSECT_KERNELS says)
        fast = run()
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = run()
    return fast, slow


@pytest.mark.parametrize("in_size,out_size", SIZES)
def test_mask_counts_equal_the_pytorch_path_and_the_dense_truth(monkeypatch, in_size,
                                                                out_size):
    maps = _maps(in_size, 0)
    up = Upsampler(in_size, out_size)
    dense = up(maps).flatten(2)
    # thresholds that values reach exactly (ties), 0 under post-ReLU zeros, the constant
    # unit's own value, and +inf (a unit without values)
    thresholds = torch.stack([dense[:, 0].flatten().sort().values[-50], torch.tensor(0.0),
                              torch.tensor(0.5), torch.tensor(0.7), torch.tensor(float("inf"))])
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (9, 2, up.pixels), generator=g, dtype=torch.int32)
    image_labels = torch.randint(6, 8, (9, 1), generator=g)  # columns of their own
    has_category = torch.rand(9, 3, generator=g) < 0.7

    def run() -> IoUCounts:
        counts = IoUCounts(5, 8, 3)
        counts.add_maps(up, maps, thresholds, labels, image_labels, has_category)
        return counts

    fast, slow = _both(monkeypatch, run)
    for field in IoUCounts._FIELDS:
        assert torch.equal(getattr(fast, field), getattr(slow, field)), field
    mask = dense > thresholds[None, :, None]
    assert torch.equal(fast.mask_total, mask.sum((0, 2)))
    truth = torch.zeros(5, 8, dtype=torch.int64)
    for layer in range(2):
        hits = torch.nn.functional.one_hot(labels[:, layer].long(), 8)  # [B, P, 8]
        truth += torch.einsum("bup,bpc->uc", mask.long(), hits)
    assert torch.equal(fast.intersection[:, 1:6], truth[:, 1:6])  # 6, 7: image labels


@pytest.mark.parametrize("in_size,out_size", SIZES)
def test_cell_bounds_count_the_same(monkeypatch, in_size, out_size):
    maps = _maps(in_size, 1)
    up = Upsampler(in_size, out_size)

    def run() -> list[torch.Tensor]:
        search = ThresholdSearch(5, 0.02, up)
        search.add_bounds(maps[:4])
        search.add_bounds(maps[4:])
        return [search.low_hist, search.high_hist, search.mean_hist, search.nonnegative]

    fast, slow = _both(monkeypatch, run)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)
    # every pixel stands behind each kind of entry once
    assert fast[0].sum() == fast[1].sum() == fast[2].sum() == 9 * 5 * up.pixels


@pytest.mark.parametrize("in_size,out_size", SIZES)
def test_every_sweep_counts_the_same(monkeypatch, in_size, out_size):
    maps = _maps(in_size, 2)
    up = Upsampler(in_size, out_size)
    if up.identity:
        pytest.skip("the kernels do not serve this upsampling")

    def run() -> list[dict]:
        search = ThresholdSearch(5, 0.02, up)
        for b in range(0, 9, 4):
            search.add_bounds(maps[b:b + 4])
        search.start()
        states = []
        while not search.done_all:
            for b in range(0, 9, 4):
                search.add_maps(maps[b:b + 4])
            # (a shared second target's ``above`` is copied from the first at the end)
            states.append({"hist": search.hist.clone(), "above": search.above[:, 0].clone()})
            search.end_sweep()
            states.append({k: v.clone() for k, v in search.state_dict().items()
                           if isinstance(v, torch.Tensor)})
        states.append({"thresholds": search.thresholds()})
        return states

    fast, slow = _both(monkeypatch, run)
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_fall_back_where_the_kernels_do_not_apply(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", True)
    up = Upsampler((4, 4), (16, 16))
    maps = torch.rand(2, 3, 4, 4)
    assert kernels.enabled(maps, up, None)
    assert not kernels.enabled(maps, up, torch.zeros(2, 3, 256, dtype=torch.bool))
    assert not kernels.enabled(maps, Upsampler((4, 4), (4, 4)), None)  # the identity
    assert not kernels.enabled(maps.to("meta"), up, None)  # not the CPU
    monkeypatch.setattr(kernels, "_HAVE_NUMBA", False)
    assert not kernels.enabled(maps, up, None)
