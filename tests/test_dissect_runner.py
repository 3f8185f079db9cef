"""End-to-end tests of the dissection runner on a tiny fake probe set and fake models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from builder.datasets.probe import Concept, ProbeBatch
from builder.dissect import DissectOptions, dissect, resolve_device
from builder.dissect import runner as runner_mod
from builder.dissect.cache import disk_room
from builder.errors import ConfigError, DatasetError
from builder.models import LoadedModel

CATEGORIES = ["object", "part", "color", "scene"]


@dataclass
class FakeProbe:
    """A ProbeSet look-alike held in memory."""

    images: np.ndarray  # [N, S, S, 3] uint8
    labels: np.ndarray  # [N, L, m, m] int32
    image_labels: np.ndarray  # [N, M] int32
    has_category: np.ndarray  # [N, C] bool
    concepts: list[Concept]
    categories: list[str] = field(default_factory=lambda: list(CATEGORIES))
    path: Path = Path("/fake/probe")
    fingerprint: str = "fake-fingerprint"

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    @property
    def mask_size(self) -> int:
        return self.labels.shape[-1]

    @property
    def num_columns(self) -> int:
        return max(c.id for c in self.concepts) + 1

    @property
    def concept_category(self) -> np.ndarray:
        out = np.full(self.num_columns, -1, dtype=np.int64)
        for c in self.concepts:
            out[c.id] = self.categories.index(c.category)
        return out

    def __len__(self) -> int:
        return len(self.images)

    def split_indices(self, split: str = "all") -> np.ndarray:
        index = np.arange(len(self))
        return index if split == "all" else index[(index % 2 == 0) == (split == "train")]

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def batches(self, indices, batch_size=64, num_workers=0, device=None):
        indices = np.asarray(indices, dtype=np.int64)
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            batch = ProbeBatch(
                indices=torch.as_tensor(idx),
                images=torch.from_numpy(self.images[idx]).permute(0, 3, 1, 2).float() / 255.0,
                labels=torch.from_numpy(self.labels[idx]),
                image_labels=torch.from_numpy(self.image_labels[idx]),
                has_category=torch.from_numpy(self.has_category[idx]),
            )
            yield batch.to(device) if device is not None else batch


def make_probe(n: int = 20, size: int = 16, mask: int = 16, seed: int = 0) -> FakeProbe:
    """Blobs of objects and parts, colour patches, scene labels; some images unannotated."""
    rng = np.random.default_rng(seed)
    concepts = [Concept(1, "tree", "object", "pixel", 0, 0.0),
                Concept(2, "car", "object", "pixel", 0, 0.0),
                Concept(3, "wheel", "part", "pixel", 0, 0.0),
                Concept(4, "door", "part", "pixel", 0, 0.0),
                Concept(5, "red", "color", "pixel", 0, 0.0),
                Concept(6, "blue", "color", "pixel", 0, 0.0),
                Concept(7, "street", "scene", "image", 0, 0.0),
                # id 8 unused: a gap in the ids
                Concept(9, "beach", "scene", "image", 0, 0.0)]
    labels = np.zeros((n, 4, mask, mask), dtype=np.int32)  # object, part, part, color
    yy, xx = np.mgrid[:mask, :mask]
    has = np.zeros((n, 4), dtype=bool)
    image_labels = np.zeros((n, 2), dtype=np.int32)
    for i in range(n):
        if i % 5 != 4:  # every fifth image carries no object/part annotation
            for concept in (1, 2):
                cy, cx, r = rng.integers(0, mask, 2).tolist() + [int(rng.integers(2, 6))]
                labels[i, 0][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = concept
            cy, cx = rng.integers(0, mask, 2)
            labels[i, 1][(abs(yy - cy) < 3) & (abs(xx - cx) < 3)] = 3
            labels[i, 2][(abs(yy - cy - 2) < 2) & (abs(xx - cx) < 4)] = rng.choice([3, 4])
            has[i, 0] = has[i, 1] = True
        labels[i, 3] = np.where(rng.random((mask, mask)) < 0.5, 5, 6) * (xx < mask // 2)
        has[i, 2] = True
        if i % 3:
            image_labels[i, 0] = 7 if i % 2 else 9
            image_labels[i, 1] = image_labels[i, 0] if i % 4 == 1 else 0  # repeated label
            has[i, 3] = True
    images = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    # channel 0 carries the "car" mask so models can plant a perfect detector
    car = np.kron(labels[:, 0] == 2, np.ones((size // mask, size // mask), dtype=bool))
    images[..., 0] = np.where(car, 255, 0)
    return FakeProbe(images, labels, image_labels, has, concepts)


class TinyNet(nn.Module):
    """Conv features at 1/2 and 1/4 resolution, plus a planted layer: unit 0 = the car mask."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.pool2 = nn.AvgPool2d(2)
        self.planted = nn.Identity()
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        car = x[:, :1]
        planted = torch.cat([car, torch.zeros_like(car), x[:, 1:2]], 1)
        self.planted(planted)
        a = self.pool1(torch.relu(self.conv1(x)))
        b = self.pool2(self.conv2(a))
        return self.head(b.mean((2, 3)))


def make_model(net: nn.Module | None = None) -> LoadedModel:
    return LoadedModel(module=net or TinyNet(), spec="test:tiny", weights=None,
                       weights_sha256="0" * 64, input_size=16, mean=(0.0, 0.0, 0.0),
                       std=(1.0, 1.0, 1.0), kind="other")


def options(**kw) -> DissectOptions:
    base = dict(quantile=0.05, batch_size=6, device="cpu", topk=4, histogram_bins=8)
    return DissectOptions(**{**base, **kw})


# -- an independent reference ----------------------------------------------------------


def reference_iou(probe: FakeProbe, maps: np.ndarray, q: float, aware: bool = True,
                  raw: bool = False) -> np.ndarray:
    """IoU [U, columns] by loops over units, concepts and images (maps [N, U, h, w])."""
    mask = probe.mask_size
    up = F.interpolate(torch.from_numpy(maps), size=(mask, mask), mode="bilinear",
                       align_corners=False).numpy()
    n, units = maps.shape[:2]
    ncol, cat = probe.num_columns, probe.concept_category
    result = np.zeros((units, ncol))
    for k in range(units):
        source = maps[:, k] if raw else up[:, k]
        t = np.quantile(source.astype(np.float64).ravel(), 1 - q)
        m = up[:, k] > np.float32(t)
        for c in range(1, ncol):
            if cat[c] < 0:
                continue
            inter = union = 0
            for i in range(n):
                if aware and not probe.has_category[i, cat[c]]:
                    continue
                if probe.categories[cat[c]] == "scene":
                    lab = np.full((mask, mask), c in probe.image_labels[i])
                else:
                    lab = (probe.labels[i] == c).any(0)
                inter += int((m[i] & lab).sum())
                union += int((m[i] | lab).sum())
            result[k, c] = inter / union if union else 0.0
    return result


def layer_maps(net: nn.Module, probe: FakeProbe, layer: str) -> np.ndarray:
    from builder.models import LayerTrace

    x = torch.from_numpy(probe.images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad(), LayerTrace(net, [layer], stop=True) as t:
        t.run(x)
    return t[layer].numpy()


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("aware,raw", [(True, False), (False, False), (True, True)])
def test_iou_matches_plain_numpy(tmp_path, aware, raw):
    probe, net = make_probe(), TinyNet()
    out = dissect(make_model(net), ["pool1", "pool2"], probe, tmp_path / "run",
                  options(category_aware=aware, threshold_on="raw" if raw else "upsampled"),
                  progress=False)
    for layer in ("pool1", "pool2"):
        expected = reference_iou(probe, layer_maps(net, probe, layer), 0.05, aware, raw)
        got = np.load(out / "layers" / layer / "iou.npy")
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert expected.max() > 0.05  # the fixture is not trivially all zero


def test_planted_unit_and_silent_unit(tmp_path):
    probe = make_probe()
    out = dissect(make_model(), ["planted"], probe, tmp_path / "run", options(quantile=0.3),
                  progress=False)
    iou = np.load(out / "layers" / "planted" / "iou.npy")
    lines = (out / "layers" / "planted" / "units.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert iou[0, 2] == pytest.approx(1.0)
    assert rows[0]["label"] == "car" and rows[0]["concept_id"] == "2" and rows[0]["detector"] == "1"
    assert rows[0]["category"] == "object" and float(rows[0]["iou"]) == pytest.approx(1.0)
    assert rows[1]["detector"] == "0" and rows[1]["label"] == "" and float(rows[1]["iou"]) == 0
    assert np.all(iou[1] == 0) and np.all(iou[:, 0] == 0)
    info = json.loads((out / "layers" / "planted" / "layer.json").read_text())
    assert info["detectors"]["object"] >= 1 and info["unique_detectors"]["object"] >= 1


def test_run_directory_contents(tmp_path):
    probe = make_probe()
    out = dissect(make_model(), ["pool2"], probe, tmp_path / "run", options(),
                  progress=False, dataset_spec="fake", command=["unitdissect", "dissect"])
    assert sorted(p.name for p in out.iterdir()) == ["concepts.csv", "layers", "manifest.json"]
    folder = out / "layers" / "pool2"
    assert sorted(p.name for p in folder.iterdir()) == [
        "histogram.npz", "iou.npy", "layer.json", "topk.npz", "units.csv"]
    concepts = (out / "concepts.csv").read_text().splitlines()
    assert concepts[0] == "id,name,category,level,frequency" and concepts[1].startswith("1,tree,")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "unitdissect-run" and manifest["format_version"] == 1
    assert manifest["options"]["quantile"] == 0.05 and manifest["options"]["device"] == "cpu"
    assert manifest["options"]["quantile_method"] == "exact"
    assert manifest["model"]["layers"] == ["pool2"] and manifest["dataset"]["spec"] == "fake"
    assert manifest["versions"]["torch"] and manifest["stats"]["layers"]["pool2"]["nonfinite"] == 0
    topk = np.load(folder / "topk.npz")
    assert topk["index"].shape == (5, 4) and topk["maps"].shape == (5, 4, 4, 4)
    assert topk["maps"].dtype == np.float16
    maps = layer_maps(make_model().module, probe, "pool2")
    scores = maps.max((2, 3))  # [N, U]
    for u in range(5):
        assert list(topk["index"][u]) == list(np.argsort(-scores[:, u], kind="stable")[:4])
    hist = np.load(folder / "histogram.npz")
    assert hist["counts"].shape == (5, 8) and hist["edges"].shape == (5, 9)
    assert np.all(hist["counts"].sum(1) == maps[:, 0].size)
    units = (folder / "units.csv").read_text().splitlines()
    coverage = [float(line.split(",")[7]) for line in units[1:]]
    assert all(0.0 < c <= 0.05 + 1e-9 for c in coverage)


def _outputs(out: Path, layers=("pool1", "pool2")) -> dict[str, bytes]:
    files = ("units.csv", "iou.npy", "topk.npz", "histogram.npz")
    return {f"{layer}/{f}": (out / "layers" / layer / f).read_bytes()
            for layer in layers for f in files}


class Stop(Exception):
    pass


FORWARD, SEARCH, COUNT = runner_mod._FORWARD, runner_mod._SEARCH, runner_mod._COUNT


@pytest.mark.parametrize("stage,after", [(FORWARD, 1), (FORWARD, 2), (SEARCH, 1), (COUNT, 0),
                                         (COUNT, 2)])
def test_resume_after_interruption_is_byte_identical(tmp_path, monkeypatch, stage, after):
    probe, model = make_probe(), make_model()
    opts = options(checkpoint_every=1)
    reference = _outputs(dissect(model, ["pool1", "pool2"], probe, tmp_path / "a", opts,
                                 progress=False))

    def hook(pass_number, batch):
        if (pass_number, batch) == (stage, after):
            raise Stop()

    monkeypatch.setattr(runner_mod, "_after_batch", hook)
    with pytest.raises(Stop):
        dissect(model, ["pool1", "pool2"], probe, tmp_path / "b", opts, progress=False)
    assert list((tmp_path / "b" / "checkpoints").iterdir())
    seen = []
    monkeypatch.setattr(runner_mod, "_after_batch", lambda p, b: seen.append((p, b)))
    dissect(model, ["pool1", "pool2"], probe, tmp_path / "b", opts, progress=False)
    assert _outputs(tmp_path / "b") == reference
    assert (1, 0) not in seen  # it resumed rather than started over
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_sampled_quantile_resume_and_cache_free_run_agree(tmp_path, monkeypatch):
    probe, model = make_probe(n=40), make_model()
    # no room for the activations nor for the exact tail: the one-pass sampling sketch
    small = dict(quantile_memory=1, checkpoint_every=1, cache_memory=0, cache_disk=0)
    monkeypatch.setattr(runner_mod, "MIN_CAPACITY", 16)
    reference = _outputs(dissect(model, ["pool1", "pool2"], probe, tmp_path / "a",
                                 options(**small), progress=False))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["stats"]["layers"]["pool1"]["quantile_strategy"] == "stream"
    assert manifest["stats"]["layers"]["pool1"]["quantile_method"] == "sampled"
    assert manifest["stats"]["layers"]["pool1"]["quantile_sample_rate"] < 1

    def hook(pass_number, batch):
        if (pass_number, batch) == (1, 3):
            raise Stop()

    monkeypatch.setattr(runner_mod, "_after_batch", hook)
    with pytest.raises(Stop):
        dissect(model, ["pool1", "pool2"], probe, tmp_path / "c", options(**small),
                progress=False)
    monkeypatch.setattr(runner_mod, "_after_batch", None)
    assert _outputs(dissect(model, ["pool1", "pool2"], probe, tmp_path / "c",
                            options(**small), progress=False)) == reference


def test_changed_option_does_not_resume_stale_state(tmp_path, monkeypatch):
    probe, model = make_probe(), make_model()

    def hook(pass_number, batch):
        if (pass_number, batch) == (COUNT, 1):
            raise Stop()

    monkeypatch.setattr(runner_mod, "_after_batch", hook)
    with pytest.raises(Stop):
        dissect(model, ["pool2"], probe, tmp_path / "b", options(checkpoint_every=1),
                progress=False)
    monkeypatch.setattr(runner_mod, "_after_batch", None)
    changed = options(checkpoint_every=1, quantile=0.1)
    got = _outputs(dissect(model, ["pool2"], probe, tmp_path / "b", changed, progress=False),
                   ["pool2"])
    fresh = _outputs(dissect(model, ["pool2"], probe, tmp_path / "a", changed, progress=False),
                     ["pool2"])
    assert got == fresh


def test_finished_layers_are_skipped(tmp_path, monkeypatch):
    probe, model = make_probe(), make_model()
    dissect(model, ["pool2"], probe, tmp_path / "run", options(), progress=False)
    before = (tmp_path / "run" / "layers" / "pool2" / "layer.json").stat().st_mtime_ns
    seen = []
    monkeypatch.setattr(runner_mod, "_after_batch", lambda p, b: seen.append((p, b)))
    dissect(model, ["pool2"], probe, tmp_path / "run", options(), progress=False)
    assert seen == []
    dissect(model, ["pool1", "pool2"], probe, tmp_path / "run", options(), progress=False)
    assert seen  # pool1 ran
    assert (tmp_path / "run" / "layers" / "pool2" / "layer.json").stat().st_mtime_ns == before
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["model"]["layers"] == ["pool1", "pool2"]
    assert manifest["stats"]["layers"]["pool2"]["shape"] == [5, 4, 4]


class NaNNet(nn.Module):
    """One unit with NaN and inf activations in a corner of every image."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()

    def forward(self, x):
        maps = x[:, :2, ::2, ::2].clone()
        maps[:, 0, :2, :2] = float("nan")
        maps[:, 1, 0, 0] = float("inf")
        return self.layer(maps)


def test_label_ids_beyond_the_concepts_are_a_dataset_error(tmp_path):
    probe = make_probe()
    probe.labels[3, 0, 2, 2] = probe.num_columns  # no such concept
    with pytest.raises(DatasetError, match=r"label maps of /fake/probe hold concept ids"):
        dissect(make_model(), ["pool1"], probe, tmp_path, options(), progress=False)


def test_nonfinite_activations_are_counted_and_excluded(tmp_path):
    probe = make_probe()
    out = dissect(make_model(NaNNet()), ["layer"], probe, tmp_path / "run", options(),
                  progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["layers"]["layer"]["nonfinite"] == len(probe) * 5
    units = (out / "layers" / "layer" / "units.csv").read_text().splitlines()[1:]
    assert all(np.isfinite(float(u.split(",")[6])) for u in units)  # thresholds
    iou = np.load(out / "layers" / "layer" / "iou.npy")
    assert np.all(np.isfinite(iou))
    topk = np.load(out / "layers" / "layer" / "topk.npz")
    assert np.all(np.isfinite(topk["maps"])) and np.all(np.isfinite(topk["score"]))


def test_options_validation_names_every_bad_option():
    with pytest.raises(ConfigError) as e:
        DissectOptions(quantile=1.5, iou_threshold=-1, batch_size=0, split="test",
                       device="tpu", threshold_on="mean", mean=(1, 2), std=(0, 1, 1))
    message = str(e.value)
    for flag in ("--quantile", "--iou-threshold", "--batch-size", "--split", "--device",
                 "--threshold-on", "--mean", "--std"):
        assert flag in message
    assert DissectOptions(mean=[0.5, 0.5, 0.5]).mean == (0.5, 0.5, 0.5)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            resolve_device("cuda")


@pytest.mark.parametrize("stop", [None, (FORWARD, 2), (SEARCH, 1), (COUNT, 1)])
def test_activations_kept_on_disk(tmp_path, monkeypatch, stop):
    """Beyond the memory budget batches go to disk: the search runs as with every batch in
    memory and gives the same files; a killed run's batches are read back by the rerun that
    resumes it (no batch is computed twice), and the files go when the run ends."""
    probe, model = make_probe(), make_model()
    reference = _outputs(dissect(model, ["pool1", "pool2"], probe, tmp_path / "a", options(),
                                 progress=False))
    disk = options(cache_memory=1, cache_disk=1 << 30, checkpoint_every=1)
    out = tmp_path / "b"
    if stop is not None:
        def hook(pass_number, batch):
            if (pass_number, batch) == stop:
                raise Stop()

        monkeypatch.setattr(runner_mod, "_after_batch", hook)
        with pytest.raises(Stop):
            dissect(model, ["pool1", "pool2"], probe, out, disk, progress=False)
        kept = list((out / "checkpoints").glob("*-activations/*.pt"))
        assert kept  # the batches so far (those the count pass has not yet used)
        monkeypatch.setattr(runner_mod, "_after_batch", None)
    forwards = []
    original = probe.batches
    monkeypatch.setattr(probe, "batches", lambda chunk, *a, **k: (
        forwards.append(len(chunk)) or original(chunk, *a, **k)))
    dissect(model, ["pool1", "pool2"], probe, out, disk, progress=False)
    assert _outputs(out) == reference
    layer = json.loads((out / "manifest.json").read_text())["stats"]["layers"]["pool1"]
    assert layer["quantile_strategy"] == "search"
    # only pass 1 reads images (what it had not read before it was killed)
    assert sum(forwards) == (len(probe) if stop is None else
                             len(probe) - 6 * (stop[1] + 1) if stop[0] == FORWARD else 0)
    assert not list(out.glob("checkpoints/*-activations"))


def test_a_failing_disk_costs_forward_passes_not_results(tmp_path, monkeypatch):
    from builder.dissect import cache as cache_mod

    probe, model = make_probe(), make_model()
    reference = _outputs(dissect(model, ["pool1", "pool2"], probe, tmp_path / "a", options(),
                                 progress=False))
    writes = []
    real = cache_mod.atomic.write_torch

    def flaky(path, obj):
        if path.parent.name.endswith("-activations"):  # (checkpoints are written too)
            writes.append(path)
            if len(writes) == 3:
                raise OSError(28, "No space left on device")
        return real(path, obj)

    monkeypatch.setattr(cache_mod.atomic, "write_torch", flaky)
    out = dissect(model, ["pool1", "pool2"], probe, tmp_path / "b",
                  options(cache_memory=1, cache_disk=1 << 30), progress=False)
    assert _outputs(out) == reference and len(writes) == 3  # no write after the failure


def test_disk_room_leaves_free_space(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    assert disk_room(tmp_path / "not" / "yet", 1 << 20) == min(1 << 20, free - (1 << 30))
    assert disk_room(tmp_path, free * 4) == free - (1 << 30) or free < (1 << 30)
    assert disk_room(tmp_path, 0) == 0


def test_search_and_exact_stream_give_identical_files(tmp_path):
    probe, model = make_probe(n=30), make_model()
    streamed = dissect(model, ["pool1", "pool2"], probe, tmp_path / "a",
                       options(cache_memory=0, cache_disk=0), progress=False)
    searched = dissect(model, ["pool1", "pool2"], probe, tmp_path / "b", options(),
                       progress=False)
    for out, strategy in ((streamed, "stream"), (searched, "search")):
        layer = json.loads((out / "manifest.json").read_text())["stats"]["layers"]["pool1"]
        assert layer["quantile_strategy"] == strategy and layer["quantile_method"] == "exact"
    assert _outputs(searched) == _outputs(streamed)
