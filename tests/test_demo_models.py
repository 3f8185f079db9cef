"""The shipped demo models load by spec and reach their documented metrics; training runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from builder.cli import main
from builder.models import demo_registry  # noqa: F401 - registers demo:classifier, ...
from builder.models import get_demo, list_demos, load_model, load_weights
from builder.models.demo import IMAGENET_MEAN, IMAGENET_STD
from builder.models.demo_nets import ToyClassifier, ToyGenerator, ToySegmenter
from builder.train.classifier import ClassifierConfig, evaluate_classifier, train_classifier
from builder.train.data import VAL_SEED, head_vocabulary, render_scenes, to_model_input
from builder.train.generator import (GeneratorConfig, frechet_distance, sample_images,
                                     train_generator)
from builder.train.segmenter import SegmenterConfig, evaluate_segmenter, train_segmenter

#: Fresh validation scenes: same world as training's validation set, past the indices it used.
FRESH = 20_000
NAMES = ("classifier", "generator", "segmenter")
#: Demos whose weights are not shipped yet (issue 4 is open): their weight tests skip, saying so.
NOT_SHIPPED = tuple(n for n in ("generator",) if not get_demo(n).weights_path().is_file())


def needs_weights(name: str) -> None:
    """Skip, naming the model, when its weights are not shipped yet."""
    if name in NOT_SHIPPED:
        pytest.skip(f"demo:{name} weights are not shipped yet")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def segmenter_model():
    return load_model("demo:segmenter").module


def test_registered_and_shipped():
    assert set(NAMES) <= set(list_demos())
    for name in NAMES:
        if name in NOT_SHIPPED:
            continue
        entry = get_demo(name)
        path = entry.weights_path()
        assert path is not None and path.is_file(), f"missing shipped weights {path}"
        assert path.stat().st_size < 10 * 2 ** 20
        summary = json.loads(path.with_suffix(".json").read_text())
        assert summary["command"].startswith(f"unitdissect demo train {name}")
    assert get_demo("generator").input_shape == (128,)
    assert get_demo("classifier").kind == "classifier"


def test_layer_names():
    classifier = load_model("demo:classifier")
    names = dict(classifier.module.named_modules())
    for layer in ("features.conv1_1", "features.conv3_2", "features.conv5_1", "features.conv5_3"):
        assert layer in names
    assert names["features.conv5_3"].conv.out_channels == 32
    assert classifier.module.class_names[0] == "ski_resort"
    needs_weights("generator")
    generator = load_model("demo:generator").module
    assert [n for n, _ in generator.named_children()] == [f"layer{i}" for i in range(1, 8)] + [
        "output"]


def test_classifier_accuracy():
    loaded = load_model("demo:classifier")
    assert loaded.input_size == 128
    data = render_scenes(200, 128, VAL_SEED, start=FRESH)
    metrics = evaluate_classifier(loaded.module, data.images, data.scenes)
    assert metrics["accuracy"] >= 0.85, metrics


def test_classifier_passes_the_pnas_science_check(tmp_path, capsys):
    """Each class rests on a few units of conv5_3: removing a class's 5 most important units
    (ranked on train) costs it at least 3x what 5 random units cost, for >= 80% of classes."""
    probe = tmp_path / "probe"
    assert main(["dataset", "build", "toyworld:n=600", "--out", str(probe)]) == 0
    assert main(["ablate", "--model", "demo:classifier", "--layer", "features.conv5_3",
                 "--dataset", str(probe), "--out", str(tmp_path / "run"),
                 "--adversarial", "0", "--random-draws", "10"]) == 0
    science = json.loads((tmp_path / "run/ablation/features.conv5_3/science.json").read_text())
    assert science["pass"] and science["fraction"] >= 0.8, science
    # the drops are large, not single flipped images: most classes fall near chance
    drops = [row["drop_top5"] for row in science["per_class"]]
    assert float(np.median(drops)) >= 0.3, drops
    capsys.readouterr()


def test_segmenter_accuracy(segmenter_model):
    data = render_scenes(20, 64, VAL_SEED, labels=True, start=FRESH)
    metrics = evaluate_segmenter(segmenter_model, data.images, data.labels)
    assert metrics["object"]["pixel_accuracy"] >= 0.88, metrics
    assert metrics["material"]["pixel_accuracy"] >= 0.8, metrics


def test_generator_makes_scenes(segmenter_model):
    needs_weights("generator")
    loaded = load_model("demo:generator")
    z = loaded.example_input(batch=4).normal_()
    with torch.no_grad():
        images = loaded.module(z)
    assert images.shape == (4, 3, 64, 64) and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1
    samples = sample_images(loaded.module, 32, 128, seed=1)
    with torch.no_grad():
        logits = segmenter_model(to_model_input(samples, IMAGENET_MEAN, IMAGENET_STD))
    objects = torch.unique(logits["object"].argmax(1))
    names = [head_vocabulary("object")[i - 1].name for i in objects.tolist() if i > 0]
    assert len(names) >= 6, names
    assert "sky" in names


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    b = rng.normal(size=(500, 4)) + 3
    assert frechet_distance(a, b) == pytest.approx(36, rel=0.1)


# ---------------------------------------------------------------------------- training
def test_train_classifier_tiny(tmp_path):
    config = ClassifierConfig(n_train=24, n_val=12, size=32, crop=24, epochs=1, batch_size=8,
                              width=0.25, workers=1, device="cpu")
    result = train_classifier(config, tmp_path, command="test")
    state = (tmp_path / "classifier.safetensors")
    assert state.is_file() and 0 <= result.metrics["val_accuracy"] <= 1
    summary = json.loads((tmp_path / "classifier.json").read_text())
    assert summary["command"] == "test" and summary["data"]["train"]["seed"] == 1
    model = ToyClassifier(width=0.25)
    load_weights(model, state)


def test_train_segmenter_tiny(tmp_path):
    config = SegmenterConfig(n_train=8, n_val=4, size=32, epochs=1, batch_size=4, width=0.25,
                             workers=1, device="cpu")
    result = train_segmenter(config, tmp_path)
    assert set(result.metrics) >= {"object", "part", "material"}
    assert (tmp_path / "segmenter.safetensors").is_file()


def test_train_generator_tiny(tmp_path):
    config = GeneratorConfig(n_train=8, steps=2, vae_steps=2, batch_size=4, width=0.0625,
                             d_width=4, recalibrate_batches=2, workers=1, device="cpu")
    seen = []
    result = train_generator(config, tmp_path, on_step=lambda step, ema, raw: seen.append(step))
    assert seen == [2, 3, 4]  # after the VAE warm-up, then after each adversarial step
    assert [set(row) >= {"recon", "kl"} for row in result.metrics["history"]] == [True, False]
    model = ToyGenerator(width=0.0625)
    load_weights(model, tmp_path / "generator.safetensors")
    assert model(torch.randn(2, 128)).shape == (2, 3, 64, 64)


def test_cli_train_and_list(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["demo", "train", "segmenter", "--out", str(out), "--epochs", "1",
                 "--n-train", "4", "--n-val", "4", "--batch-size", "4", "--workers", "1",
                 "--device", "cpu", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "segmenter.json").read_text())
    assert summary["command"].startswith("unitdissect demo train segmenter --out")
    assert "--epochs 1" in summary["command"]
    load_weights(ToySegmenter(demo_registry.segmenter_heads()), out / "segmenter.safetensors")
    assert main(["demo", "train", "classifier", "--steps", "3", "--out", str(out)]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["demo", "list"]) == 0
    assert "demo:classifier" in capsys.readouterr().out


def test_generator_frechet_distance_beats_the_baselines():
    """The documented quality figure on a small sample: far nearer real scenes than noise."""
    needs_weights("generator")
    from builder.train.generator import GENERATOR_SCENES, evaluate_generator

    report = evaluate_generator(load_model("demo:generator").module,
                                classifier_weights=get_demo("classifier").weights_path(),
                                n=120, seed=5, scenes=GENERATOR_SCENES)
    fd = report["frechet_classifier_conv5_3"]
    assert fd["generated"] < fd["blurred real"] and fd["generated"] < 0.2 * fd["uniform noise"], fd
