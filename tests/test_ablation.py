"""Ablation: the context managers, the metrics, the sweep engine's strategies, curves, the CLI."""

from __future__ import annotations

import csv
import json
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from builder.cli import main
from builder.intervene import (Ablation, BatchedAblation, ClassMap, LayerEvaluator,
                               apply_unit_masks, balanced_accuracy, confusion_matrix, curve_points,
                               important_unit_counts, match_classes, rank_units, removal_curves,
                               repeat_batch, science_check, single_unit_sweep, spearman)
from builder.intervene import accuracy as overall_accuracy
from builder.models import LayerTrace

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight over a busy machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _chain(seed: int = 0, units: int = 6, classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, units, 3, padding=1)), ("relu2", nn.ReLU(inplace=True)),
        ("conv3", nn.Conv2d(units, 5, 1)), ("relu3", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(5, classes)),
    ])).eval()


class _NotAChain(nn.Module):
    """The same computation as ``_chain`` behind a custom forward (split_at cannot cut it)."""

    def __init__(self, chain: nn.Sequential) -> None:
        super().__init__()
        self.body = chain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    with LayerTrace(model, [layer]) as trace:
        model(x)
        return trace[layer]


def _tiny_images(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.arange(n) % 3


def _batches(images: torch.Tensor, labels: torch.Tensor, size: int = 5):
    return lambda: ((images[i:i + size], labels[i:i + size]) for i in range(0, len(images), size))


CLASSES3 = ClassMap(("a", "b", "c"), (0, 1, 2), (1, 2, 3), 3)


# --------------------------------------------------------------------------- context managers


@pytest.mark.parametrize("mode,value", [("zero", 0.0), ("set", 2.5), ("scale", 0.5)])
def test_ablation_changes_exactly_the_chosen_units_and_restores(mode, value):
    model = _chain()
    x = torch.rand(4, 3, 8, 8)
    before_out = model(x).detach()
    before = _layer_output(model, "conv2", x)
    hooks = _hooks(model)
    with Ablation(model, "conv2", [1, 4], mode=mode, value=value):
        during = _layer_output(model, "conv2", x)
        changed = model(x).detach()
    expected = before.clone()
    if mode == "scale":
        expected[:, [1, 4]] = before[:, [1, 4]] * value
    else:
        expected[:, [1, 4]] = value
    torch.testing.assert_close(during, expected)
    assert not torch.equal(changed, before_out)
    assert _hooks(model) == hooks == 0
    assert torch.equal(model(x).detach(), before_out)


def test_ablation_restores_after_an_exception_and_per_unit_values():
    model = _chain()
    x = torch.rand(2, 3, 8, 8)
    before = model(x).detach()
    with pytest.raises(RuntimeError, match="boom"):
        with Ablation(model, "conv2", [0]):
            model(x)
            raise RuntimeError("boom")
    assert _hooks(model) == 0 and torch.equal(model(x).detach(), before)
    with Ablation(model, "conv2", [0, 2], mode="set", value=[1.0, 3.0]):
        out = _layer_output(model, "conv2", x)
    assert torch.all(out[:, 0] == 1.0) and torch.all(out[:, 2] == 3.0)


def test_batched_ablation_equals_one_at_a_time():
    model = _chain()
    x = torch.rand(3, 3, 8, 8)
    masks = torch.zeros(4, 6, dtype=torch.bool)
    masks[1, 0] = masks[2, [1, 5]] = masks[3] = True
    with BatchedAblation(model, "conv2", masks):
        batched = model(repeat_batch(x, 4)).detach()
    single = []
    for mask in masks:
        with Ablation(model, "conv2", mask.nonzero().flatten()):
            single.append(model(x).detach())
    torch.testing.assert_close(batched, torch.cat(single))
    assert _hooks(model) == 0
    # on cached activations, and for tokens [B, T, C] (units last)
    acts = _layer_output(model, "conv2", x)
    stacked = apply_unit_masks(acts, masks, "scale", 0.25).reshape(4, 3, 6, 8, 8)
    for k, mask in enumerate(masks):
        factor = torch.where(mask, 0.25, 1.0)[None, :, None, None]
        torch.testing.assert_close(stacked[k], acts * factor)
    tokens = torch.rand(2, 5, 6)
    out = apply_unit_masks(tokens, masks[2:3])
    assert torch.all(out[..., [1, 5]] == 0) and torch.equal(out[..., 0], tokens[..., 0])


# --------------------------------------------------------------------------- metrics


def test_balanced_accuracy_against_a_hand_computed_example():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 3, 1, 0, 2, 2, 2, 1])  # 3 = an output outside the classes
    conf = confusion_matrix(labels, preds, 3, 4)
    assert conf.tolist() == [[2, 1, 0, 1], [1, 1, 0, 0], [0, 1, 3, 0]]
    # class 0: recall 2/4, negatives 6 with 1 false positive -> TNR 5/6
    # class 1: recall 1/2, negatives 8 with 2 false positives -> TNR 6/8
    # class 2: recall 3/4, negatives 6 with 0 false positives -> TNR 1
    expected = [(2 / 4 + 5 / 6) / 2, (1 / 2 + 6 / 8) / 2, (3 / 4 + 1) / 2]
    np.testing.assert_allclose(balanced_accuracy(conf), expected)
    assert overall_accuracy(conf) == pytest.approx(6 / 10)
    stacked = np.stack([conf.numpy(), conf.numpy()])
    np.testing.assert_allclose(balanced_accuracy(stacked), [expected, expected])
    assert np.isnan(balanced_accuracy(np.array([[0, 0], [0, 3]]))[0])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)


def test_rankings_points_and_science():
    baseline = np.array([0.9, 0.8])
    # drops: unit 0 (0, .3), unit 1 (.3, 0), unit 2 (.2, .1)
    single = np.array([[0.9, 0.5], [0.6, 0.8], [0.7, 0.7]])
    order = rank_units(baseline, single)
    assert order.tolist() == [[1, 2, 0], [0, 2, 1]]
    # equal accuracy drops are ordered by the drop of the class's logit margin
    tied = rank_units(np.array([1.0]), np.array([[1.0], [1.0], [0.9]]), np.array([5.0]),
                      np.array([[4.0], [2.0], [4.9]]))
    assert tied.tolist() == [[2, 1, 0]]
    assert important_unit_counts(order, k=1).tolist() == [1, 1, 0]
    assert curve_points(512)[:9] == [0, 1, 2, 3, 4, 5, 10, 20, 50] and curve_points(512)[-1] == 512
    assert curve_points(3) == [0, 1, 2, 3]
    result = science_check(["a", "b"], np.array([0.9, 0.8]), np.array([0.6, 0.79]),
                           np.array([0.85, 0.75]), k=5)
    assert [r["pass"] for r in result["per_class"]] == [True, False] and result["fraction"] == 0.5


def test_classes_match_scene_concepts_by_canonical_name():
    class C:
        def __init__(self, id, name, category):
            self.id, self.name, self.category = id, name, category

    concepts = [C(1, "tree", "object"), C(7, "ski resort", "scene"), C(9, "living room", "scene")]
    cmap = match_classes(["living_room", "Ski_Resort"], concepts)
    assert cmap.concepts == (9, 7) and cmap.outputs == (0, 1)
    from builder.errors import DatasetError

    with pytest.raises(DatasetError, match="'kitchen'"):
        match_classes(["living_room", "kitchen"], concepts)


# --------------------------------------------------------------------------- the engine


def test_split_graft_and_full_sweeps_agree():
    images, labels = _tiny_images()
    chain = _chain()
    results = {}
    for strategy, model in (("split", chain), ("full", chain), ("graft", _NotAChain(chain).eval())):
        layer = "conv2" if strategy != "graft" else "body.conv2"
        ev = LayerEvaluator(model, layer, _batches(images, labels), CLASSES3, MEAN, STD,
                            strategy=strategy, chunk_memory=3 * 5 * 6 * 64 * 4)
        assert ev.strategy == strategy and ev.units == 6
        results[strategy] = single_unit_sweep(ev)
        assert _hooks(model) == 0
    auto = LayerEvaluator(_NotAChain(chain).eval(), "body.conv2", _batches(images, labels),
                          CLASSES3, MEAN, STD, cache_memory=0)
    assert auto.strategy == "graft"
    results["uncached"] = single_unit_sweep(auto)
    for name in ("full", "graft", "uncached"):
        np.testing.assert_array_equal(results[name].balanced_accuracy,
                                      results["split"].balanced_accuracy)
        np.testing.assert_array_equal(results[name].accuracy, results["split"].accuracy)
    # the sweep's baseline is the plain model's accuracy
    with torch.no_grad():
        preds = chain(images).argmax(1)
    expected = float((preds == labels).float().mean())
    assert results["split"].baseline_accuracy == pytest.approx(expected)


class _Residual(nn.Module):
    """After ``mid`` the input is read again (a skip from the input): grafting is not valid."""

    def __init__(self) -> None:
        super().__init__()
        self.mid = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.mid(x) + x).mean(dim=(2, 3)))


def test_auto_falls_back_to_full_passes_when_grafting_is_wrong():
    images, labels = _tiny_images(6)
    torch.manual_seed(0)
    model = _Residual().eval()
    ev = LayerEvaluator(model, "mid", _batches(images, labels), CLASSES3, MEAN, STD)
    assert ev.strategy == "full"
    masks = torch.eye(3, dtype=torch.bool)
    conf = ev.evaluate(masks).confusion
    for k in range(3):
        with Ablation(model, "mid", [k]), torch.no_grad():
            preds = model(images).argmax(1)
        np.testing.assert_array_equal(conf[k, :, :3], confusion_matrix(labels, preds, 3).numpy())


def test_curves_end_points():
    images, labels = _tiny_images(15)
    ev = LayerEvaluator(_chain(), "conv2", _batches(images, labels), CLASSES3, MEAN, STD)
    sweep = single_unit_sweep(ev)
    order = rank_units(sweep.baseline, sweep.balanced_accuracy)
    curves = removal_curves(ev, order, [0, 2, 6])
    everything = ev.evaluate(torch.ones(1, 6, dtype=torch.bool))
    np.testing.assert_allclose(curves.top[:, 2], everything.balanced_accuracy[0])  # top, all
    np.testing.assert_allclose(curves.top_accuracy[:, 2], everything.accuracy[0])
    np.testing.assert_allclose(curves.top_margin[:, 2], everything.margin[0])
    np.testing.assert_allclose(curves.rest[:, 2], sweep.baseline)  # rest keeping all
    np.testing.assert_allclose(curves.rest_accuracy[:, 2], sweep.baseline_accuracy)
    np.testing.assert_allclose(curves.rest_margin[:, 2], sweep.baseline_margin)
    np.testing.assert_allclose(curves.top[:, 0], sweep.baseline)
    for c in range(3):  # "top 2" of class c removes exactly its two best units
        mask = torch.zeros(1, 6, dtype=torch.bool)
        mask[0, order[c, :2]] = True
        assert curves.top[c, 1] == pytest.approx(ev.evaluate(mask).balanced_accuracy[0, c])


def _planted() -> nn.Sequential:
    """Unit 4 carries red, unit 1 green, unit 2 blue; class 0 reads only unit 4."""
    head = nn.Conv2d(3, 6, 1)
    fc = nn.Linear(6, 3)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(0.01)
        head.weight[4, 0] = head.weight[1, 1] = head.weight[2, 2] = 1.0
        head.weight[0, :] = head.weight[3, :] = head.weight[5, :] = 0.3
        fc.weight.zero_()
        fc.bias.zero_()
        fc.weight[0, 4] = fc.weight[1, 1] = fc.weight[2, 2] = 10.0
    return nn.Sequential(OrderedDict([("head", head), ("units", nn.ReLU()),
                                      ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()),
                                      ("fc", fc)])).eval()


def test_planted_unit_is_ranked_first():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    images = 0.2 * torch.rand(30, 3, 4, 4, generator=g)
    images[torch.arange(30), labels] += 0.7  # the class's colour channel is bright
    ev = LayerEvaluator(_planted(), "units", _batches(images, labels, 8), CLASSES3, MEAN, STD)
    sweep = single_unit_sweep(ev)
    assert sweep.baseline_accuracy == 1.0
    order = rank_units(sweep.baseline, sweep.balanced_accuracy)
    assert order[0, 0] == 4 and order[1, 0] == 1 and order[2, 0] == 2
    assert sweep.importance[4, 0] == pytest.approx(0.5)  # class 0 never predicted: chance
    with torch.no_grad():
        z = _planted()(images)
    own = z[torch.arange(30), labels]
    other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    for c in range(3):
        assert sweep.baseline_margin[c] == pytest.approx(float((own - other)[labels == c].mean()))


# --------------------------------------------------------------------------- the command


MODEL_FILE = textwrap.dedent('''
    import torch
    from builder.datasets.sources.toyworld import SCENES
    from builder.models.demo_nets import ToyClassifier

    def make():
        torch.manual_seed(0)
        model = ToyClassifier(num_classes=len(SCENES))  # conv5_3: 32 units
        model.class_names = tuple(SCENES)
        return model
''')


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablate-ds")
    import os

    here = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["dataset", "build", "toyworld:n=60,size=32", "--min-frequency", "1",
                     "--out", str(folder / "ds")]) == 0
    finally:
        os.chdir(here)
    return folder / "ds"


def test_cli_end_to_end_writes_resumes_and_renders(tiny_dataset, tmp_path, capsys):
    from builder.intervene import runner

    (tmp_path / "tiny.py").write_text(MODEL_FILE)
    spec = f"{tmp_path / 'tiny.py'}:make"
    run_dir = tmp_path / "run"
    assert main(["dissect", "--model", spec, "--layers", "features.conv5_3", "--dataset",
                 str(tiny_dataset), "--out", str(run_dir), "--topk", "2"]) == 0
    args = ["ablate", "--model", spec, "--layer", "features.conv5_3", "--dataset",
            str(tiny_dataset), "--out", str(run_dir), "--adversarial", "1", "--random-draws", "3",
            "--pgd-steps", "3", "--cw-steps", "5"]
    assert main(args) == 0
    folder = run_dir / "ablation" / "features.conv5_3"
    for name in ("single_unit.npy", "single_unit_rank.npy", "ranking.npy", "baseline.json", "curves.csv",
                 "random_curves.csv", "important_units.csv", "science.json", "adversarial.json",
                 "manifest.json"):
        assert (folder / name).is_file(), name
    baseline = json.loads((folder / "baseline.json").read_text())
    single = np.load(folder / "single_unit.npy")
    assert single.dtype == np.float32 and single.shape == (32, len(baseline["classes"]))
    assert np.load(folder / "single_unit_rank.npy").shape == single.shape
    assert len(baseline["balanced_accuracy"]) == len(baseline["classes"]) >= 2
    with open(folder / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["class", "order", "n_removed", "balanced_accuracy", "accuracy"]
    assert {r["order"] for r in rows} == {"top", "rest"}
    with open(folder / "important_units.csv", newline="") as f:
        important = list(csv.DictReader(f))
    assert len(important) == 32 and {"unit", "classes_top4", "label", "iou"} <= set(important[0])
    science = json.loads((folder / "science.json").read_text())
    assert science["k"] == 5 and len(science["per_class"]) == len(baseline["classes"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["dataset"]["fingerprint"]
    attacks = json.loads((folder / "adversarial.json").read_text())["attacks"]
    assert {a["method"] for a in attacks} == {"pgd", "cw"}
    assert "balanced accuracy" not in capsys.readouterr().err

    # the site reads it
    from builder.report.gather import read_run

    layer = read_run(run_dir).layers[0]
    assert layer.ablation is not None and layer.ablation.curves
    assert layer.ablation.single_unit.shape == single.shape
    ranking = np.load(folder / "ranking.npy")
    assert ranking.shape == (len(baseline["classes"]), 32)
    assert np.array_equal(np.sort(ranking, axis=1), np.broadcast_to(np.arange(32), ranking.shape))
    # the class pages list units in the curves' order
    assert layer.ablation.top_units(0, 5) == ranking[0, :5].tolist()

    # a rerun skips every finished stage
    stages: list[str] = []
    runner._after_stage = stages.append
    try:
        assert main(args) == 0
    finally:
        runner._after_stage = None
    assert stages == []


def test_cli_bad_layer_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "tiny.py").write_text(MODEL_FILE)
    code = main(["ablate", "--model", f"{tmp_path / 'tiny.py'}:make", "--layer", "features.conv9",
                 "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "features.conv9" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
