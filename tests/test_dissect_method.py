"""The presets of ``--method`` (builder/dissect/method.py) against plain numpy implementations
of the definitions they document (docs/method.md, section 8), and how they are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from builder.cli import main
from builder.dissect import DissectOptions, dissect
from builder.dissect.method import CHOICES, METHODS, THRESHOLD_ON, UNIONS, UPSAMPLINGS
from builder.errors import ConfigError
from builder.models import LayerTrace
from test_dissect_runner import FakeProbe, TinyNet, make_model, make_probe

BATCH = 6
LAYERS = ("pool1", "pool2")  # 8 x 8 post-ReLU, 4 x 4 signed; the masks are 16 x 16


# -- the documented definitions, in plain numpy ---------------------------------------------


def axis(n_in: int, n_out: int, zeros: bool) -> tuple[np.ndarray, ...]:
    """Sources and weights of each output position: x = (n_in / n_out)(t + 1/2) - 1/2 in
    float32; ``border`` clamps x at 0 and repeats the last source, ``zeros`` reads 0 beyond
    both ends. Indices are into the axis with one extra source at each end."""
    scale = np.float32(n_in) / np.float32(n_out)
    x = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    if not zeros:
        x = np.maximum(x, np.float32(0))
    i0 = np.floor(x).astype(np.int64)
    w1 = x - i0.astype(np.float32)
    return i0 + 1, i0 + 2, np.float32(1) - w1, w1


def upsample(maps: np.ndarray, size: int, zeros: bool) -> np.ndarray:
    """Bilinear S [N, U, size, size] of maps [N, U, h, w]: a horizontal then a vertical pass,
    each two float32 products and a sum."""
    ext = np.pad(maps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="constant" if zeros else "edge")
    x0, x1, v0, v1 = axis(maps.shape[3], size, zeros)
    y0, y1, w0, w1 = axis(maps.shape[2], size, zeros)
    ah = ext[..., x0] * v0 + ext[..., x1] * v1
    return ah[..., y0, :] * w0[:, None] + ah[..., y1, :] * w1[:, None]


def concept_mask(probe: FakeProbe, i: int, c: int) -> np.ndarray:
    """L_c of image i [m, m]: pixels any label layer carries c at, or the whole image."""
    if probe.categories[probe.concept_category[c]] == "scene":
        return np.full((probe.mask_size,) * 2, c in probe.image_labels[i])
    return (probe.labels[i] == c).any(0)


def union_images(probe: FakeProbe, mask: np.ndarray, category: int, rule: str) -> np.ndarray:
    """Which images' mask areas enter a union of ``category``, for one unit's masks [N, m, m]."""
    n = len(probe)
    if rule == "all":
        return np.ones(n, dtype=bool)
    if rule == "category":
        return probe.has_category[:, category]
    members = [c for c in range(probe.num_columns) if probe.concept_category[c] == category]
    return np.array([mask[i].any() and any(concept_mask(probe, i, c)[mask[i]].any()
                                           for c in members) for i in range(n)])


def reference(probe: FakeProbe, maps: np.ndarray, options: DissectOptions
              ) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds [U] and IoU [U, columns] of ``options``' resolved choices, by loops."""
    zeros = options.upsampling == "bilinear-zeros"
    s = upsample(maps, probe.mask_size, zeros)
    source = maps if options.threshold_on == "raw" else s
    units, columns = maps.shape[1], probe.num_columns
    thresholds = np.zeros(units, dtype=np.float32)
    iou = np.zeros((units, columns))
    for k in range(units):
        t = np.float32(np.quantile(source[:, k].astype(np.float64).ravel(), 1 - options.quantile))
        thresholds[k] = t
        mask = s[:, k] > t
        for c in range(1, columns):
            category = probe.concept_category[c]
            if category < 0:
                continue
            images = union_images(probe, mask, category, options.union)
            inter = area = label = 0
            for i in range(len(probe)):
                lab = concept_mask(probe, i, c)
                inter += int((mask[i] & lab).sum())
                label += int(lab.sum())
                area += int(mask[i].sum()) if images[i] else 0
            union = area + label - inter
            iou[k, c] = inter / union if union else 0.0
    return thresholds, iou


def layer_maps(net: torch.nn.Module, probe: FakeProbe, layer: str, mean, std) -> np.ndarray:
    """The layer's maps, normalised and batched as the engine does (the same bits)."""
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    parts = []
    for start in range(0, len(probe), BATCH):
        x = torch.from_numpy(probe.images[start:start + BATCH]).permute(0, 3, 1, 2).float()
        with torch.no_grad(), LayerTrace(net, [layer], stop=True) as t:
            t.run((x / 255.0 - mean_t) / std_t)
        parts.append(t[layer].numpy())
    return np.concatenate(parts)


def _options(method: str, **kw) -> DissectOptions:
    return DissectOptions(method=method, batch_size=BATCH, device="cpu", topk=4,
                          histogram_bins=8, **kw)


def _thresholds(folder: Path) -> np.ndarray:
    lines = (folder / "units.csv").read_text().splitlines()
    column = lines[0].split(",").index("threshold")
    return np.array([np.float32(line.split(",")[column]) for line in lines[1:]])


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,overrides", [
    ("unitdissect", {}), ("netdissect", {}), ("pnas", {}),
    # explicit choices override the preset's
    ("pnas", {"quantile": 0.05}), ("netdissect", {"union": "all", "threshold_on": "upsampled"}),
    ("unitdissect", {"upsampling": "bilinear-zeros", "threshold_on": "raw", "quantile": 0.03}),
    ("netdissect", {"union": "overlap", "quantile": 0.05}),
])
def test_each_preset_matches_its_definition(tmp_path, method, overrides):
    probe, net = make_probe(), TinyNet()
    options = _options(method, **overrides)
    preset = METHODS[method]
    for name in CHOICES:  # the preset's value unless overridden
        assert getattr(options, name) == overrides.get(name, getattr(preset, name)), name
    out = dissect(make_model(net), list(LAYERS), probe, tmp_path / "run", options,
                  progress=False)
    mean = options.mean or (0.0, 0.0, 0.0)  # (the test model's own normalisation)
    std = options.std or (1.0, 1.0, 1.0)
    for layer in LAYERS:
        thresholds, expected = reference(probe, layer_maps(net, probe, layer, mean, std),
                                         options)
        got = np.load(out / "layers" / layer / "iou.npy")
        assert np.array_equal(_thresholds(out / "layers" / layer), thresholds)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-6
        assert expected.max() > 0  # not trivially all zero
    manifest = json.loads((out / "manifest.json").read_text())["options"]
    assert manifest["method"] == method
    assert manifest["method_overrides"] == [n for n in CHOICES if n in overrides
                                            and overrides[n] != getattr(preset, n)]
    for name in ("quantile", "iou_threshold", "threshold_on", "upsampling", "union"):
        assert manifest[name] == getattr(options, name)
    assert manifest["category_aware"] == (options.union != "all")
    assert manifest["mean"] == list(mean) and manifest["std"] == list(std)


def test_the_choices_change_the_results():
    """The fixture tells the rules apart: zeros beyond the edges move thresholds, and the
    overlap union differs from the category one."""
    probe, net = make_probe(), TinyNet()
    maps = layer_maps(net, probe, "pool1", (0.0,) * 3, (1.0,) * 3)
    border_t, category = reference(probe, maps, _options("unitdissect", quantile=0.05))
    zeros_t, _ = reference(probe, maps, _options("unitdissect", quantile=0.05,
                                                 upsampling="bilinear-zeros"))
    _, overlap = reference(probe, maps, _options("unitdissect", quantile=0.05,
                                                 union="overlap"))
    assert not np.array_equal(border_t, zeros_t)
    assert np.abs(overlap - category).max() > 1e-3 and bool((overlap >= category - 1e-12).all())


def test_presets_table():
    assert list(METHODS) == ["unitdissect", "netdissect", "pnas"]
    lite, pnas, ours = METHODS["netdissect"], METHODS["pnas"], METHODS["unitdissect"]
    assert (ours.quantile, ours.threshold_on, ours.upsampling, ours.union, ours.mean) == \
        (0.005, "upsampled", "bilinear", "category", None)
    assert (lite.quantile, lite.threshold_on, lite.upsampling, lite.union) == \
        (0.005, "raw", "bilinear", "overlap")
    # NetDissect-Lite: BGR mean (109.5388, 118.6897, 124.6901) on 0-255, divided by 255 * 0.224
    assert np.allclose(np.array(lite.mean) * 255, [124.6901, 118.6897, 109.5388])
    assert lite.std == (0.224,) * 3
    assert (pnas.quantile, pnas.threshold_on, pnas.upsampling, pnas.union) == \
        (0.01, "upsampled", "bilinear-zeros", "all")
    assert pnas.mean == (0.485, 0.456, 0.406) and pnas.std == (0.229, 0.224, 0.225)
    assert all(m.iou_threshold == 0.04 for m in METHODS.values())


def test_category_aware_is_the_union_rule():
    assert DissectOptions(category_aware=False).union == "all"
    assert DissectOptions(method="netdissect", category_aware=True).union == "overlap"
    assert DissectOptions(method="pnas", category_aware=True).union == "category"
    assert DissectOptions(method="pnas").category_aware is False
    assert DissectOptions(union="overlap").category_aware is True
    assert DissectOptions().method_overrides == ()
    with pytest.raises(ConfigError, match="contradict"):
        DissectOptions(union="all", category_aware=True)
    with pytest.raises(ConfigError) as e:
        DissectOptions(method="lite", upsampling="nearest", union="some", threshold_on="x")
    for flag in ("--method", "--upsampling", "--union", "--threshold-on"):
        assert flag in str(e.value)


def test_fingerprint_follows_the_resolved_choices(tmp_path):
    """A changed choice never resumes or skips; the same choices under another name do."""
    probe, net = make_probe(n=12), TinyNet()
    model = make_model(net)

    def run(options: DissectOptions) -> dict:
        dissect(model, ["pool2"], probe, tmp_path / "run", options, progress=False)
        return json.loads((tmp_path / "run" / "manifest.json").read_text())["fingerprints"]

    ours = run(_options("unitdissect"))
    pnas = run(_options("pnas"))
    assert ours != pnas
    layer = tmp_path / "run" / "layers" / "pool2" / "layer.json"
    stamp = layer.stat().st_mtime_ns
    same = run(_options("unitdissect", quantile=0.01, upsampling="bilinear-zeros", union="all",
                        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    assert same == pnas and layer.stat().st_mtime_ns == stamp  # finished: skipped
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["options"]
    assert manifest["method"] == "unitdissect"
    assert manifest["method_overrides"] == ["quantile", "upsampling", "union", "mean", "std"]


MODEL = """
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2))
"""


def test_cli_method_and_overrides(tmp_path, capsys):
    (tmp_path / "tiny_model.py").write_text(MODEL)
    argv = ["dissect", "--model", f"{tmp_path / 'tiny_model.py'}:make", "--layers", "2",
            "--dataset", "toyworld:n=12,size=32", "--out", str(tmp_path / "run"),
            "--device", "cpu", "--batch-size", "6", "--method", "pnas", "--quantile", "0.02"]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    options = manifest["options"]
    assert options["method"] == "pnas" and options["quantile"] == 0.02
    assert options["upsampling"] == "bilinear-zeros" and options["union"] == "all"
    assert options["category_aware"] is False and options["threshold_on"] == "upsampled"
    assert options["mean"] == [0.485, 0.456, 0.406] and options["method_overrides"] == ["quantile"]
    words = manifest["command"]
    assert words[words.index("--method") + 1] == "pnas" and "--upsampling" not in words
    capsys.readouterr()
    for bad, flag in ((["--method", "caffe"], "--method"),
                      (["--union", "category", "--no-category-aware"], "--union"),
                      (["--upsampling", "bicubic"], "--upsampling")):
        assert main(argv[:-4] + bad) == 2
        err = capsys.readouterr().err
        assert flag in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_workspace_config_takes_a_method(tmp_path):
    from builder.workspace import config as config_mod
    from builder.workspace.config import parse_config
    from builder.workspace.pipeline import _ablation_options, _dissect_options

    text = """
[[dissect]]
name = "r"
model = "torchvision:resnet18"
layers = ["layer4"]
method = "pnas"
union = "overlap"

[[ablate]]
run = "r"
layer = "layer4"
"""
    config = parse_config(text)
    entry = config.dissect[0]
    options = _dissect_options(config, entry)
    assert options.method == "pnas" and options.union == "overlap" and options.quantile == 0.01
    assert options.upsampling == "bilinear-zeros" and options.method_overrides == ("union",)
    # the ablation sees the dissection's normalisation, the preset's included
    ablation = _ablation_options(config, config.ablate[0], entry)
    assert ablation.mean == (0.485, 0.456, 0.406) and ablation.std == (0.229, 0.224, 0.225)
    with pytest.raises(ConfigError, match=r":6: dissect.method = 'caffe'"):
        parse_config(text.replace('"pnas"', '"caffe"'))
    # the config's choices are the engine's (kept as literals there: no torch import)
    choices = config_mod._CHOICES
    assert choices["method"] == tuple(METHODS) and choices["union"] == UNIONS
    assert choices["upsampling"] == UPSAMPLINGS and choices["threshold_on"] == THRESHOLD_ON


def test_ablate_cli_uses_the_normalisation_the_run_was_dissected_with(tmp_path):
    from builder.cli import main
    from builder.dissect.method import METHODS

    assert main(["dataset", "build", "toyworld:n=200,size=64", "--min-frequency", "1",
                 "--out", "ds"]) == 0
    assert main(["dissect", "--model", "demo:classifier", "--layers", "features.conv5_3",
                 "--dataset", "ds", "--out", "run", "--method", "netdissect"]) == 0
    assert main(["ablate", "--model", "demo:classifier", "--layer", "features.conv5_3",
                 "--dataset", "ds", "--out", "run", "--random-draws", "1",
                 "--adversarial", "0"]) == 0
    dissected = json.loads(Path("run/manifest.json").read_text())["options"]
    ablated = json.loads(Path("run/ablation/features.conv5_3/manifest.json").read_text())
    assert dissected["mean"] == list(METHODS["netdissect"].mean)
    assert ablated["options"]["mean"] == dissected["mean"]
    assert ablated["options"]["std"] == dissected["std"]
