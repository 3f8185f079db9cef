"""Generator dissection: seeded samples, the segmentation cache, ablation, insertion, adapters."""

from __future__ import annotations

import csv
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from builder.datasets.sources.base import SourceConcept
from builder.generator import (GanOptions, LatentSpec, LayerSplit, SampleProbe, concept_counts,
                               load_generator, ratio_interval, run_gan, sample_latents)
from builder.generator.adapters import ProGANGenerator, StyleGAN2Generator
from builder.generator.segment import Labeller

SIDE = 8  # the planted generator's feature map side; images are 2 * SIDE


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- a planted world


class _Maps(nn.Module):
    """4 units on an 8x8 grid: unit k is relu(z_k) inside its own fixed square, 0 elsewhere;
    unit 3 follows z_0 at a tenth of the strength in a shifted square (a weak distractor)."""

    def __init__(self) -> None:
        super().__init__()
        pattern = torch.zeros(4, SIDE, SIDE)
        pattern[0, 1:5, 1:5] = 1  # apple
        pattern[1, 4:8, 4:8] = 1  # leaf
        pattern[2, 0:3, 5:8] = 1  # nothing is painted from unit 2
        pattern[3, 3:7, 3:7] = 0.1
        self.register_buffer("pattern", pattern)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        amp = torch.relu(z[:, :4])
        amp = torch.cat([amp[:, :3], amp[:, :1]], 1)
        return amp[:, :, None, None] * self.pattern


class _Paint(nn.Module):
    """Red where unit 0 > 0.3, green where unit 1 > 0.3 (red wins), dark elsewhere; x2 nearest."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        red = (maps[:, 0] > 0.3).float()
        green = (maps[:, 1] > 0.3).float() * (1 - red)
        image = torch.stack([red, green, torch.zeros_like(red)], 1) * 2 - 1
        return nn.functional.interpolate(image, scale_factor=2, mode="nearest")


def planted_generator() -> nn.Module:
    model = nn.Sequential(OrderedDict([("layer1", _Maps()), ("output", _Paint())]))
    model.z_dim = 6
    return model


class ColorSegmenter:
    """Labels red pixels "apple" and green pixels "leaf" (objects); counts its calls."""

    name = "stub:colors"

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def concepts(self):
        return [SourceConcept(1, "apple", "object"), SourceConcept(2, "leaf", "object")]

    def segment(self, images):
        self.calls += 1
        self.images += len(images)
        out = []
        for image in images:
            labels = np.zeros(image.shape[:2], np.uint16)
            labels[(image[..., 0] > 128) & (image[..., 1] < 128)] = 1
            labels[(image[..., 1] > 128) & (image[..., 0] < 128)] = 2
            out.append({"object": [labels]})
        return out

    def fingerprint(self) -> str:
        return "stub-colors-v1"


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- latents


def test_sample_i_is_deterministic():
    spec = LatentSpec((16,), seed=3)
    alone = sample_latents(spec, [5])
    batch = sample_latents(spec, [9, 5, 0])
    assert torch.equal(alone[0], batch[1])
    assert not torch.equal(batch[0], batch[1])
    assert not torch.equal(alone, sample_latents(LatentSpec((16,), seed=4), [5]))
    truncated = sample_latents(LatentSpec((512,), "truncated", truncation=1.5), range(8))
    assert truncated.abs().max() <= 1.5 and truncated.std() > 0.5
    uniform = sample_latents(LatentSpec((4, 4), "uniform"), [0, 1])
    assert uniform.shape == (2, 4, 4) and uniform.abs().max() <= 1


def test_ratio_interval_is_paired():
    before = np.array([10, 20, 30, 40])
    ratio, low, high = ratio_interval(before, before)
    assert ratio == 1 and low == 1 and high == 1
    after = np.array([5, 10, 15, 21])
    ratio, low, high = ratio_interval(after, before)
    assert ratio == pytest.approx(51 / 100)
    assert low < ratio < high and high - low < 0.05  # nearly proportional: a tight interval
    labels = torch.tensor([[[[1, 1], [2, 0]], [[1, 3], [3, 0]]]])  # pixel (0,0) has 1 twice
    assert concept_counts(labels, 4).tolist() == [[0, 2, 1, 2]]


# --------------------------------------------------------------------------- the cache


def test_segmentation_cache_is_reused(tmp_path):
    generator = load_generator(planted_generator())
    segmenter = ColorSegmenter()
    labeller = Labeller(segmenter, 2 * SIDE)
    first = SampleProbe(generator, labeller, 20, tmp_path / "cache", batch_size=8,
                        progress=False)
    assert first.segmented == 20 and segmenter.images == 20
    again = SampleProbe(generator, labeller, 20, tmp_path / "cache", progress=False)
    assert again.segmented == 0 and segmenter.images == 20  # no segmenter call at all
    assert np.array_equal(again.counts, first.counts)
    more = SampleProbe(generator, labeller, 30, tmp_path / "cache", progress=False)
    assert more.segmented == 10 and segmenter.images == 30  # only the new samples
    assert np.array_equal(more.counts[:20], first.counts)
    # the cached labels are those of the images: red pixels are apple
    image = more.image(3)
    labels = more.labels([3])[0, 0].numpy()
    assert np.array_equal(labels == 1, (image[..., 0] > 128) & (image[..., 1] < 128))
    batch = next(more.batches([4, 2], batch_size=8))
    assert torch.equal(batch.inputs, more.latents([4, 2]))
    assert batch.labels.shape == (2, 1, 2 * SIDE, 2 * SIDE)
    names = {c.name: c for c in more.concepts}
    assert set(names) == {"apple", "leaf"} and 0 < names["apple"].frequency < 30


# --------------------------------------------------------------------------- planted run


def test_planted_units_are_found_removed_and_inserted(tmp_path):
    segmenter = ColorSegmenter()
    options = GanOptions(device="cpu", max_units=3, science_units=1, insertion_units=1,
                         insertion_samples=12, gallery_size=3, batch_size=8,
                         cache_dir=str(tmp_path / "cache"), num_concepts=2)
    out = run_gan(planted_generator(), ["layer1"], segmenter, 40, tmp_path / "run", options,
                  progress=False)
    # dissection: unit 0 is apple's best unit, unit 1 leaf's
    units = _read_csv(out / "layers" / "layer1" / "units.csv")
    assert units[0]["label"] == "apple" and units[1]["label"] == "leaf"
    iou = np.load(out / "layers" / "layer1" / "iou.npy")
    assert iou.shape == (4, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["inputs"] == "latents" and manifest["dataset"]["images"] == 40
    folder = out / "generator" / "layer1"
    ablation = {(r["concept"], int(r["n_removed"])): r for r in _read_csv(folder / "ablation.csv")}
    assert {n for _, n in ablation} == {0, 1, 2, 3}
    for concept in ("apple", "leaf"):
        zero = ablation[(concept, 0)]
        assert float(zero["fraction_remaining"]) == 1.0
        assert float(zero["ci_low"]) == 1.0 and float(zero["ci_high"]) == 1.0
        assert int(zero["samples"]) == 40
        assert float(ablation[(concept, 1)]["fraction_remaining"]) == 0.0  # all gone
    ranked = [r for r in _read_csv(folder / "concept_units.csv") if r["concept"] == "apple"]
    assert ranked[0]["unit"] == "0"
    science = json.loads((folder / "science.json").read_text())
    assert science["pass"] and science["removed"] == 1.0
    assert {c["concept"] for c in science["concepts"]} == {"apple", "leaf"}
    # insertion: forcing unit 0 on paints apple wherever it is forced, on any context
    rows = [r for r in _read_csv(folder / "insertion.csv") if r["concept"] == "apple"]
    contexts = {r["context"]: r for r in rows}
    assert "none" in contexts and "leaf" in contexts
    assert float(contexts["none"]["added_fraction"]) == 1.0
    assert sum(int(r["n"]) for r in rows) == 12 * 64  # every sample at every window
    leaf_rows = [r for r in _read_csv(folder / "insertion.csv") if r["concept"] == "leaf"]
    # leaf is painted under red only where apple is absent: inserted into apple it never shows
    leaf_ctx = {r["context"]: float(r["added_fraction"]) for r in leaf_rows}
    assert leaf_ctx["none"] == 1.0 and leaf_ctx.get("apple", 0.0) == 0.0
    gallery = json.loads((folder / "gallery" / "gallery.json").read_text())
    files = {s["file"] for s in gallery["strips"]}
    assert files == {"ablation-apple.png", "ablation-leaf.png", "insertion-apple.png",
                     "insertion-leaf.png"}
    from PIL import Image

    strip = Image.open(folder / "gallery" / "ablation-apple.png")
    assert strip.size == (3 * 16 + 2 * 2, 2 * 16 + 2)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["strategy"] == "split"
    assert summary["ablation"]["images"] == 2 * 3 * 40  # N = 1..3, two concepts, 40 samples
    # a rerun skips the finished layer and segments nothing
    calls = segmenter.calls
    run_gan(planted_generator(), ["layer1"], segmenter, 40, tmp_path / "run", options,
            progress=False)
    assert segmenter.calls == calls


def test_graft_matches_split():
    generator = load_generator(planted_generator())
    split = LayerSplit(generator, "layer1", "split")
    graft = LayerSplit(generator, "layer1", "graft")
    z = generator.latents(range(5))
    acts = split.head(z)
    acts[:, 0] = 0
    assert torch.equal(split.tail(acts, z), graft.tail(acts, z))
    assert graft.strategy == "graft" and split.strategy == "split"


# --------------------------------------------------------------------------- adapters


def test_progan_adapter(tmp_path):
    torch.manual_seed(0)
    model = ProGANGenerator([16, 8, 8, 4])
    for p in model.parameters():
        nn.init.normal_(p)
    path = tmp_path / "progan.pth"
    torch.save(model.state_dict(), path)
    generator = load_generator(f"progan:{path}")
    assert generator.latent.shape == (16,)
    images = generator.generate(generator.latents([0, 1]))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert [n for n, _ in generator.module.named_children()][-1] == "output_16x16"
    split = LayerSplit(generator, "layer3")
    assert split.strategy == "split"
    z = generator.latents([2, 3])
    assert torch.allclose(split.tail(split.head(z), z), generator.module(z), atol=1e-5)


def test_stylegan2_adapter(tmp_path):
    torch.manual_seed(0)
    model = StyleGAN2Generator(size=16, style_dim=8, n_mlp=2, channels={4: 8, 8: 8, 16: 4})
    state = model.state_dict()
    assert {"style.1.weight", "input.input", "conv1.conv.modulation.weight",
            "convs.1.noise.weight", "to_rgbs.1.upsample.kernel", "noises.noise_4"} <= set(state)
    torch.save({"g_ema": state}, tmp_path / "sg2.pt")
    generator = load_generator(f"stylegan2:{tmp_path / 'sg2.pt'}")
    images = generator.generate(generator.latents([0, 1, 2]))
    assert images.shape == (3, 3, 16, 16)
    assert torch.equal(images, generator.generate(generator.latents([0, 1, 2])))  # fixed noise
    split = LayerSplit(generator, "convs.1")
    assert split.strategy == "graft"  # later layers read the latent too
    z = generator.latents([4, 5])
    assert torch.allclose(split.tail(split.head(z), z), generator.module(z), atol=1e-5)


def test_generators_say_whether_their_weights_are_random(tmp_path):
    (tmp_path / "gen.py").write_text(
        "from torch import nn\n\n"
        "def make():\n"
        "    net = nn.Sequential(nn.Linear(4, 48), nn.Unflatten(1, (3, 4, 4)))\n"
        "    net.z_dim = 4\n"
        "    return net\n\n"
        "def planted():\n"
        "    import test_generator\n"
        "    return test_generator.planted_generator()\n")
    assert load_generator(f"{tmp_path / 'gen.py'}:make").random_weights
    assert not load_generator(f"{tmp_path / 'gen.py'}:planted").random_weights  # buffers only
    assert not load_generator("demo:generator").random_weights
