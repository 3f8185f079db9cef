"""The segmenter adapters: demo:segmenter, torchvision models, transformers models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from builder import segmenters
from builder.datasets.sources.base import SourceConcept
from builder.datasets.sources.images import ImageFolderSource, get_segmenter, list_segmenters
from builder.datasets.sources.toyworld import ToyWorld
from builder.errors import SpecError, WeightsError
from builder.segmenters import (DemoSegmenter, TorchvisionSegmenter, TransformersSegmenter,
                                segmenter_from_spec)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo():
    return DemoSegmenter()


def _scenes(n: int, size: int) -> tuple[list[np.ndarray], list[dict]]:
    world = ToyWorld(n=20_000 + n, size=size, seed=2, texture_fraction=0.0)
    samples = [world.sample(20_000 + i) for i in range(n)]
    return [s.image for s in samples], [s.pixel for s in samples]


def test_registered():
    names = list_segmenters()
    assert "demo:segmenter" in names and "torchvision:deeplabv3_resnet50" in names
    segmenters.register_builtin_segmenters()  # idempotent


def test_demo_segmenter_labels_toy_scenes(demo):
    assert isinstance(get_segmenter("demo:segmenter"), DemoSegmenter)
    concepts = demo.concepts()
    assert {c.category for c in concepts} == {"object", "part", "material"}
    toy = {(c.code, c.name, c.category) for c in ToyWorld(n=0).concepts()}
    assert all((c.code, c.name, c.category) in toy for c in concepts)  # the toy world's codes
    images, truth = _scenes(6, 64)
    out = demo.segment(images)
    assert len(out) == 6
    hits = total = 0
    for maps, pixel in zip(out, truth):
        assert set(maps) == {"object", "part", "material"}
        assert maps["object"][0].shape == (64, 64) and maps["object"][0].dtype == np.uint16
        hits += int((maps["object"][0] == pixel["object"][0]).sum())
        total += pixel["object"][0].size
    assert hits / total > 0.85
    assert demo.fingerprint() == DemoSegmenter().fingerprint()


def test_demo_segmenter_any_size(demo):
    images, truth = _scenes(2, 128)
    odd = np.zeros((40, 50, 3), np.uint8)
    out = demo.segment([images[0], odd, images[1]])
    assert out[0]["object"][0].shape == (128, 128) and out[1]["part"][0].shape == (40, 50)
    agree = np.mean([(o["object"][0] == t["object"][0]).mean()
                     for o, t in zip([out[0], out[2]], truth)])
    assert agree > 0.75
    assert demo.segment([]) == []


def test_demo_segmenter_builds_a_folder_source(tmp_path, demo):
    images, _ = _scenes(3, 64)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    source = ImageFolderSource(tmp_path, "demo:segmenter")
    sample = source.sample(1)
    assert set(sample.pixel) == {"object", "part", "material"}
    assert sample.pixel["object"][0].shape == (64, 64)
    assert source.fingerprint() == ImageFolderSource(tmp_path, demo).fingerprint()


def test_demo_segmenter_missing_weights(tmp_path):
    with pytest.raises(WeightsError):
        DemoSegmenter(weights=tmp_path / "none.safetensors")


def test_torchvision_segmenter_random_and_file(tmp_path):
    seg = TorchvisionSegmenter("lraspp_mobilenet_v3_large", resize=None)
    assert [c.name for c in seg.concepts()][:3] == ["aeroplane", "bicycle", "bird"]
    assert all(isinstance(c, SourceConcept) and c.category == "object" for c in seg.concepts())
    images = [np.random.default_rng(0).integers(0, 255, (48, 40, 3), np.uint8),
              np.zeros((32, 32, 3), np.uint8)]
    out = seg.segment(images)
    assert out[0]["object"][0].shape == (48, 40) and out[1]["object"][0].shape == (32, 32)
    assert out[0]["object"][0].max() <= 20
    # the same weights through a file give the same labels and fingerprint hash
    path = tmp_path / "w.pth"
    torch.save(seg.model.state_dict(), path)
    again = segmenter_from_spec("torchvision:lraspp_mobilenet_v3_large", weights=path)
    again.resize = None
    np.testing.assert_array_equal(again.segment(images)[0]["object"][0], out[0]["object"][0])
    assert again.fingerprint() != seg.fingerprint()  # file hash vs random-init hash
    assert TorchvisionSegmenter("lraspp_mobilenet_v3_large").fingerprint() == seg.fingerprint() \
        .replace("resize=None", "resize=520")


def test_torchvision_segmenter_with_aux_weights(tmp_path):
    import torchvision

    model = torchvision.models.get_model("deeplabv3_mobilenet_v3_large", weights=None,
                                         weights_backbone=None, num_classes=21, aux_loss=True)
    path = tmp_path / "aux.pth"
    torch.save(model.state_dict(), path)
    seg = TorchvisionSegmenter("deeplabv3_mobilenet_v3_large", weights=path, resize=64)
    assert seg.segment([np.zeros((20, 30, 3), np.uint8)])[0]["object"][0].shape == (20, 30)


def test_bad_specs():
    with pytest.raises(SpecError):
        segmenter_from_spec("torchvision:resnet18")
    with pytest.raises(SpecError):
        segmenter_from_spec("nope")


def _tiny_segformer():
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
        hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1],
        mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=4,
        id2label={0: "background", 1: "wall", 2: "tree", 3: "person"},
        label2id={"background": 0, "wall": 1, "tree": 2, "person": 3})
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(config)


def test_transformers_segformer():
    seg = TransformersSegmenter(_tiny_segformer(), size=64)
    assert [(c.code, c.name) for c in seg.concepts()] == [(2, "wall"), (3, "tree"), (4, "person")]
    out = seg.segment([np.zeros((50, 60, 3), np.uint8), np.full((50, 60, 3), 200, np.uint8)])
    labels = out[1]["object"][0]
    assert labels.shape == (50, 60) and set(np.unique(labels)) <= {0, 2, 3, 4}
    assert seg.fingerprint() == TransformersSegmenter(_tiny_segformer(), size=64).fingerprint()


def test_transformers_folder(tmp_path):
    model = _tiny_segformer()
    model.save_pretrained(tmp_path / "segformer")
    seg = segmenter_from_spec(f"hf:{tmp_path / 'segformer'}")
    assert seg.name.startswith("hf:") and len(seg.concepts()) == 3
    with pytest.raises(SpecError):
        segmenter_from_spec(f"hf:{tmp_path / 'missing'}")


def test_transformers_upernet():
    transformers = pytest.importorskip("transformers")
    backbone = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16, 32, 64],
                                           depths=[1, 1, 1, 1],
                                           out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.UperNetConfig(backbone_config=backbone, hidden_size=16,
                                        auxiliary_in_channels=32, num_labels=3,
                                        use_auxiliary_head=False)
    torch.manual_seed(0)
    seg = TransformersSegmenter(transformers.UperNetForSemanticSegmentation(config), size=64)
    assert len(seg.concepts()) == 3
    assert seg.segment([np.zeros((40, 40, 3), np.uint8)])[0]["object"][0].shape == (40, 40)


@pytest.mark.parametrize("lookup", [
    "from builder.datasets.sources.images import get_segmenter as find",  # dataset build
    "from builder.generator.segment import resolve_segmenter as find",  # unitdissect gan
])
def test_demo_segmenter_found_in_a_fresh_process(lookup):
    """Each path that turns a segmenter name into a model finds the built-in ones with nothing
    else imported first (the registry is filled by importing builder.segmenters)."""
    import subprocess
    import sys

    code = f"{lookup}\nprint(find('demo:segmenter').name)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "demo:segmenter"
