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


def _pnas_grid(h: int, H: int) -> torch.Tensor:
    """The PNAS code's sampling grid without a receptive-field offset (netdissect/upsample.py,
    ``upsample_grid``): target pixel t at (t - o) * 2 / (s * max(1, h - 1)) - 1 with
    s = H / h, o = s / 2 - 1/2, for grid_sample with align_corners=True."""
    s = H / h
    g = (torch.arange(H, dtype=torch.float32) - (0.5 * s - 0.5)) * (2 / (s * max(1, h - 1))) - 1
    return torch.stack((g[None, :].expand(H, H), g[:, None].expand(H, H)), 2)[None]


@pytest.mark.parametrize("h,H", GEOMETRIES)
def test_zero_padding_matches_the_pnas_grid(h, H):
    maps = _maps("randn", h)
    grid = _pnas_grid(h, H).expand(maps.shape[0], H, H, 2)
    expected = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=True)
    got = Upsampler((h, h), (H, H), padding="zeros")(maps)
    # (grid_sample's coordinates go through [-1, 1] in float32, then times h - 1: their
    # rounding grows with h)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * h)
    # the same grid with border padding is the default convention
    border = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border",
                           align_corners=True)
    np.testing.assert_allclose(Upsampler((h, h), (H, H))(maps), border, rtol=0, atol=1e-6 * h)
    if h > 1 and H > h:  # the edges do differ
        assert float((got - border).abs().max()) > 0.1


@pytest.mark.parametrize("h,H", [(7, 112), (14, 56), (7, 100), (13, 64), (3, 97)])
def test_border_padding_is_pil_bilinear_resize(h, H):
    """NetDissect-Lite upsamples with scipy.misc.imresize(mode="F"): PIL's bilinear resize of
    a float image, the border convention."""
    image = pytest.importorskip("PIL.Image")
    maps = _maps("randn", h)[:1, :2]
    got = Upsampler((h, h), (H, H))(maps)
    for unit in range(2):
        resized = image.fromarray(maps[0, unit].numpy(), mode="F").resize(
            (H, H), resample=image.BILINEAR)
        np.testing.assert_allclose(got[0, unit], np.asarray(resized), rtol=0, atol=2e-6)


@pytest.mark.parametrize("h,H", [(7, 112), (14, 56), (7, 100), (5, 5), (3, 97), (1, 8)])
@pytest.mark.parametrize("kind", ["randn", "relu", "flat"])
@pytest.mark.parametrize("path", [0.0, float("inf")])  # dense, segments
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_pixels_above_threshold_are_exact_on_every_path(monkeypatch, h, H, kind, path,
                                                        padding):
    monkeypatch.setattr(iou_mod, "SPARSE_FRACTION", path)
    up = Upsampler((h, h), (H, H), padding=padding)
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
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_tail_keeps_every_sampled_value_above_its_floor(monkeypatch, h, H, kind, limit,
                                                        min_level, kernel, padding):
    monkeypatch.setattr(kernels, "ENABLED", kernel)
    up = Upsampler((h, h), (H, H), padding=padding)
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


def reference_iou(mask, labels, image_labels, has, category, union_rule):
    """Loops: mask [N, U, P] bool, labels [N, L, P], image_labels [N, M], has [N, C]; the
    union's mask area over the images carrying the category (True, "category"), those where
    the mask overlaps a concept of it ("overlap"), or all (False, "all")."""
    union_rule = {True: "category", False: "all"}.get(union_rule, union_rule)
    n, units, pixels = mask.shape
    columns = len(category)
    out = np.zeros((units, columns))

    def lab_of(i, c):
        return (labels[i] == c).any(0) | np.full(pixels, c in image_labels[i])

    for k in range(units):
        for c in range(1, columns):
            if category[c] < 0:
                continue
            inter = area = label = 0
            for i in range(n):
                lab = lab_of(i, c)
                inter += int((mask[i, k] & lab).sum())
                label += int(lab.sum())
                if union_rule == "category":
                    counted = has[i, category[c]]
                elif union_rule == "overlap":
                    counted = any((mask[i, k] & lab_of(i, d)).any() for d in range(1, columns)
                                  if category[d] == category[c])
                else:
                    counted = True
                area += int(mask[i, k].sum()) if counted else 0
            union = area + label - inter
            out[k, c] = inter / union if union else 0.0
    return out


@pytest.mark.parametrize("aware", [True, False, "overlap"])
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
    mask[:, 2] &= rng.random((n, 1)) < 0.5  # a unit silent on some images
    track = category if aware == "overlap" else None
    counts = IoUCounts(units, len(category), 3, overlap_category=track)
    for part in (slice(0, 4), slice(4, 9)):  # two batches
        b, u, p = torch.from_numpy(mask[part]).nonzero(as_tuple=True)
        counts.add(b, u, p, dedupe_labels(torch.from_numpy(labels[part]).int()),
                   dedupe_image_labels(torch.from_numpy(image_labels[part]).int()),
                   torch.from_numpy(has[part]))
    expected = reference_iou(mask, labels, image_labels, has, category, aware)
    np.testing.assert_allclose(counts.iou(category, aware), expected, atol=1e-7)
    assert np.allclose(counts.coverage(), mask.mean((0, 2)))
    # merging the counts of the two halves gives the same
    first, second = (IoUCounts(units, len(category), 3, overlap_category=track)
                     for _ in range(2))
    for target, part in ((first, slice(0, 4)), (second, slice(4, 9))):
        b, u, p = torch.from_numpy(mask[part]).nonzero(as_tuple=True)
        target.add(b, u, p, dedupe_labels(torch.from_numpy(labels[part]).int()),
                   dedupe_image_labels(torch.from_numpy(image_labels[part]).int()),
                   torch.from_numpy(has[part]))
    restored = IoUCounts(units, len(category), 3, overlap_category=track)
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
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_pixels_left_out_at_a_ceiling_are_counted(monkeypatch, h, H, kind, path, padding):
    """above() with ceilings gives every pixel between the threshold and the ceiling, and the
    pixels at or above the ceiling either as values or in ``skipped``, never both."""
    monkeypatch.setattr(iou_mod, "SPARSE_FRACTION", path)
    up = Upsampler((h, h), (H, H), padding=padding)
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


def test_overlap_needs_tracking_and_unions_are_checked():
    counts = IoUCounts(2, 4, 2)
    with pytest.raises(ValueError, match="overlap"):
        counts.iou(np.array([-1, 0, 0, 1]), "overlap")
    with pytest.raises(ValueError, match="union"):
        counts.iou(np.array([-1, 0, 0, 1]), "some")
    with pytest.raises(ValueError, match="padding"):
        Upsampler((2, 2), (4, 4), padding="reflect")


# -- zeros beyond the edges (the PNAS preset) and the overlap union (NetDissect-Lite's) on the
#    compiled kernels: the same counts as the PyTorch path


def _both(monkeypatch, run):
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", True)
        fast = run()
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = run()
    return fast, slow


KERNEL_SIZES = [((7, 7), (112, 112)), ((5, 3), (37, 50)), ((14, 14), (20, 20)),
                ((1, 6), (8, 13)), ((4, 4), (4, 9))]


@pytest.mark.skipif(not kernels._HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("in_size,out_size", KERNEL_SIZES)
@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_kernels_count_zero_padding_and_overlap_as_pytorch(monkeypatch, in_size, out_size,
                                                           padding):
    from builder.dissect.search import ThresholdSearch

    g = torch.Generator().manual_seed(3)
    maps = torch.randn(9, 4, *in_size, generator=g)
    maps[:, 1] = maps[:, 1].clamp(min=0)
    maps[:, 2] = torch.round(maps[:, 2] * 2) / 2  # ties
    up = Upsampler(in_size, out_size, padding=padding)
    dense = up(maps).flatten(2)
    category = np.array([-1, 0, 0, 1, 1, -1, 2, 2])
    labels = torch.randint(0, 6, (9, 2, up.pixels), generator=g, dtype=torch.int32)
    image_labels = torch.randint(6, 8, (9, 1), generator=g) * (torch.rand(9, 1, generator=g) < .6)
    # images not annotated for a category carry none of its concepts
    has = torch.rand(9, 3, generator=g) < 0.7
    has[:, 2] = image_labels[:, 0] > 0
    table = torch.as_tensor(category)
    off = ~torch.gather(has, 1, table.clamp(min=0)[labels.long()].view(9, -1)).view(labels.shape)
    labels = dedupe_labels(labels.masked_fill(off & (labels > 0), 0))

    def search() -> ThresholdSearch:
        s = ThresholdSearch(4, 0.03, up)
        for b in range(0, 9, 4):
            s.add_bounds(maps[b:b + 4])
        s.start()
        while not s.done_all:
            for b in range(0, 9, 4):
                s.add_maps(maps[b:b + 4])
            s.end_sweep()
        return s

    fast, slow = _both(monkeypatch, search)
    assert torch.equal(fast.thresholds(), slow.thresholds())
    expected = [np.quantile(dense[:, k].numpy().astype(np.float64), 1 - 0.03) for k in range(4)]
    assert np.array_equal(fast.thresholds().numpy(), np.float32(expected))
    thresholds = fast.thresholds()

    def count() -> IoUCounts:
        counts = IoUCounts(4, len(category), 3, overlap_category=category)
        counts.add_maps(up, maps, thresholds, labels, image_labels, has)
        return counts

    fast, slow = _both(monkeypatch, count)
    for field in IoUCounts._FIELDS:
        assert torch.equal(getattr(fast, field), getattr(slow, field)), field
    mask = (dense > thresholds[None, :, None]).numpy()
    for union in ("category", "overlap", "all"):
        np.testing.assert_allclose(
            fast.iou(category, union),
            reference_iou(mask, labels.numpy(), image_labels.numpy(), has.numpy(), category,
                          union), atol=1e-7)
