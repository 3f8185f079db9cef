"""Model specs, safe weights, layer names and shapes, tracing and editing by hooks, `layers` CLI."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from builder.errors import LayerError, SpecError, WeightsError
from builder.models import (
    LayerTrace,
    ModelSpec,
    list_layers,
    load_model,
    parse_spec,
    register_demo,
    resolve_layers,
    sha256_file,
    split_at,
    to_maps,
)
from builder.models import demo as demo_module
from builder.models import demo_registry  # noqa: F401 - registers demo:classifier

TINY_MODEL_FILE = """
    from torch import nn

    def make():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def not_a_model():
        return 42
"""


def tiny() -> nn.Module:
    """A three-layer conv net with known layer names '0', '1', '2'."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(textwrap.dedent(TINY_MODEL_FILE))
    return path


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, source, target, attr",
    [
        ("torchvision:resnet18", "torchvision", "resnet18", None),
        ("demo:tiny-gan", "demo", "tiny-gan", None),
        ("pkg.models:build", "module", "pkg.models", "build"),
        ("pkg.models:Net.small", "module", "pkg.models", "Net.small"),
        ("path/to/net.py:make", "file", "path/to/net.py", "make"),
        ("net.py:make", "file", "net.py", "make"),
    ],
)
def test_parse_spec_forms(text, source, target, attr):
    parsed = parse_spec(text)
    assert (parsed.source, parsed.target, parsed.attr, parsed.text) == (source, target, attr, text)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "torchvision:", "torchvision:res net", "demo:", "pkg.mod:", "pkg mod:make",
     "pkg.mod:1x", "no-colon-at-all"],
)
def test_malformed_specs(text):
    with pytest.raises(SpecError):
        parse_spec(text)


def test_bare_torchvision_name_hints_the_prefix():
    with pytest.raises(SpecError) as info:
        parse_spec("resnet18")
    assert info.value.hint == "did you mean torchvision:resnet18?"


def test_unknown_torchvision_name_suggests_close_matches():
    with pytest.raises(SpecError) as info:
        load_model("torchvision:resnet19")
    assert "torchvision:resnet18" in str(info.value)
    assert "list_models" in info.value.hint


def test_non_classification_torchvision_model_is_refused():
    with pytest.raises(SpecError, match="not a classification model"):
        load_model("torchvision:fcn_resnet50")


def test_torchvision_defaults():
    loaded = load_model("torchvision:resnet18")
    assert loaded.kind == "classifier" and loaded.input_size == 224
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.std == (0.229, 0.224, 0.225)
    assert not loaded.module.training and loaded.weights is None
    assert tuple(loaded.example_input(batch=2, input_size=32).shape) == (2, 3, 32, 32)


def test_file_spec(tiny_file):
    loaded = load_model(f"{tiny_file}:make")
    assert isinstance(loaded.module, nn.Sequential) and loaded.kind == "other"
    relative = load_model("mymodel.py:make")  # the autouse fixture runs tests in tmp_path
    assert relative.weights_sha256 == loaded.weights_sha256  # same default seed
    with pytest.raises(SpecError, match="not a torch.nn.Module"):
        load_model("mymodel.py:not_a_model")
    with pytest.raises(SpecError) as info:
        load_model("mymodel.py:mak")
    assert "make" in info.value.hint
    with pytest.raises(SpecError, match="not found"):
        load_model("missing.py:make")


def test_import_spec(tmp_path, monkeypatch):
    package = tmp_path / "userpkg_for_specs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(textwrap.dedent(TINY_MODEL_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model("userpkg_for_specs.nets:make")
    assert [name for name, _ in loaded.module.named_children()] == ["0", "1", "2"]
    assert isinstance(load_model("torch.nn:Identity").module, nn.Identity)
    with pytest.raises(SpecError, match="cannot import module"):
        load_model("no_such_package_xyz.nets:make")


def test_demo_spec(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "_REGISTRY", {})
    torch.manual_seed(5)
    weights = tmp_path / "tiny.safetensors"
    save_file(tiny().state_dict(), str(weights))
    register_demo("tiny", tiny, str(weights), input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                  kind="segmenter")
    register_demo("tiny-random", tiny, None)
    register_demo("tiny-missing", tiny, "no-such-file.safetensors")
    loaded = load_model("demo:tiny")
    assert loaded.weights == weights and loaded.weights_sha256 == sha256_file(weights)
    assert (loaded.input_size, loaded.mean, loaded.kind) == (32, (0.5, 0.5, 0.5), "segmenter")
    assert load_model("demo:tiny-random").weights is None
    with pytest.raises(WeightsError, match="missing"):
        load_model("demo:tiny-missing")
    with pytest.raises(SpecError) as info:
        load_model("demo:tinny")
    assert "demo:tiny" in str(info.value) and "tiny-random" in info.value.hint
    with pytest.raises(ValueError):
        register_demo("tiny", tiny, None)


# --- constructor arguments -------------------------------------------------------------------

ARGS_MODEL_FILE = """
    from torch import nn

    def build(width=4, depth=1, name="x", shape=(1, 2), extra=None):
        layers = [nn.Conv2d(3, width, 3, padding=1)]
        layers += [nn.Conv2d(width, width, 1) for _ in range(depth - 1)]
        net = nn.Sequential(*layers)
        net.config = {"name": name, "shape": shape, "extra": extra}
        return net

    instance = nn.Linear(2, 2)
"""


@pytest.fixture
def args_file(tmp_path):
    path = tmp_path / "argnet.py"
    path.write_text(textwrap.dedent(ARGS_MODEL_FILE))
    return path


@pytest.mark.parametrize(
    "text, source, target, attr, kwargs",
    [
        ("net.py:build(width=8)", "file", "net.py", "build", {"width": 8}),
        ("pkg.models:Net.small(depth=2, name='a:b(c)')", "module", "pkg.models", "Net.small",
         {"depth": 2, "name": "a:b(c)"}),
        ("my (copy)/net.py:build(shape=(3, -1), extra={'k': [1.5, None, True]})", "file",
         "my (copy)/net.py", "build", {"shape": (3, -1), "extra": {"k": [1.5, None, True]}}),
        ("torchvision:vgg16(num_classes=365)", "torchvision", "vgg16", None,
         {"num_classes": 365}),
        ("net.py:build()", "file", "net.py", "build", {}),
        ("net.py:build", "file", "net.py", "build", {}),
    ],
)
def test_spec_arguments_parse(text, source, target, attr, kwargs):
    parsed = parse_spec(text)
    assert (parsed.source, parsed.target, parsed.attr, parsed.text) == (source, target, attr, text)
    assert parsed.kwargs == kwargs


@pytest.mark.parametrize(
    "text, message",
    [
        ("net.py:build(8)", "positional"),
        ("net.py:build(*sizes)", "positional"),
        ("net.py:build(**options)", "**kwargs"),
        ("net.py:build(width=8, width=9)", "given twice"),
        ("net.py:build(width=__import__('os').system('echo hi'))", "not a Python literal"),
        ("net.py:build(width=os.sep)", "not a Python literal"),
        ("net.py:build(width=8", "malformed"),
        ("net.py:build(width=8))", "cannot read its arguments"),
        ("demo:classifier(width=2)", "demo models take no arguments"),
    ],
)
def test_spec_arguments_refused(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(text)


def test_spec_arguments_reach_the_callable(args_file):
    loaded = load_model(f"{args_file}:build(width=6, depth=2, name='pnas', shape=[1])")
    assert loaded.module[0].out_channels == 6 and len(loaded.module) == 2
    assert loaded.module.config == {"name": "pnas", "shape": [1], "extra": None}
    assert loaded.spec.endswith(":build(width=6, depth=2, name='pnas', shape=[1])")
    with pytest.raises(SpecError, match="unexpected keyword argument 'colour'"):
        load_model(f"{args_file}:build(colour=1)")
    with pytest.raises(SpecError, match="module instance, which takes no arguments"):
        load_model(f"{args_file}:instance(width=2)")


def test_spec_copy_with_another_target_keeps_its_arguments(args_file):
    """A workspace resolves a relative file against its folder by copying the spec with a new
    target; the arguments written in the spec must survive that."""
    parsed = parse_spec("argnet.py:build(width=5)")
    moved = ModelSpec("file", str(args_file), parsed.attr, parsed.text)
    assert moved.kwargs == {"width": 5}
    assert load_model(moved).module[0].out_channels == 5


def test_torchvision_arguments():
    loaded = load_model("torchvision:resnet18(num_classes=7)")
    assert loaded.module.fc.out_features == 7 and loaded.random_weights
    with pytest.raises(SpecError, match="never downloaded"):
        load_model("torchvision:resnet18(weights='IMAGENET1K_V1')")
    with pytest.raises(SpecError, match="building the model"):
        load_model("torchvision:resnet18(no_such_option=1)")


# --- random weights --------------------------------------------------------------------------

SEEDED_FILE = """
    import torch
    from torch import nn

    def random_net():
        return nn.Linear(3, 2)

    def fixed_net():
        net = nn.Linear(3, 2)
        with torch.no_grad():
            net.weight.fill_(0.5)
            net.bias.zero_()
        return net

    def no_tensors():
        return nn.ReLU()

    class Net(nn.Linear):
        pass

    random_instance = nn.Linear(3, 2)
    fixed_instance = fixed_net()
    net_instance = Net(3, 2)
"""


@pytest.fixture
def seeded_file(tmp_path):
    path = tmp_path / "seeded.py"
    path.write_text(textwrap.dedent(SEEDED_FILE))
    return path


def test_random_weights_flag(seeded_file, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(nn.Linear(3, 2).state_dict(), str(path))
    state = torch.get_rng_state()
    assert load_model("torchvision:resnet18").random_weights
    assert load_model("seeded.py:random_net").random_weights
    assert not load_model("seeded.py:fixed_net").random_weights  # same tensors under any seed
    assert not load_model("seeded.py:no_tensors").random_weights
    assert load_model("seeded.py:random_instance").random_weights  # the file is run again
    assert not load_model("seeded.py:fixed_instance").random_weights
    kept = load_model("seeded.py:net_instance")
    assert kept.random_weights  # and the copy run to compare did not replace the file's module:
    assert sys.modules[type(kept.module).__module__].Net is type(kept.module)
    assert not load_model("seeded.py:random_net", weights=path).random_weights
    assert not load_model("demo:classifier").random_weights  # its shipped weights
    assert torch.equal(torch.get_rng_state(), state)


def test_random_weights_keeps_the_model_of_the_requested_seed(tiny_file):
    loaded = load_model("mymodel.py:make", seed=3)  # built again under seed 4 to compare
    assert loaded.random_weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        expected = tiny()
    for key, value in expected.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)
    assert loaded.weights_sha256 != load_model("mymodel.py:make", seed=4).weights_sha256


def test_random_weights_of_a_module_instance(tmp_path, monkeypatch):
    package = tmp_path / "seededpkg_for_specs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(textwrap.dedent(SEEDED_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("seededpkg_for_specs.nets:random_instance").random_weights
    assert not load_model("seededpkg_for_specs.nets:fixed_instance").random_weights
    assert load_model("seededpkg_for_specs.nets:random_net").random_weights


def test_random_weights_of_demo_models(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "_REGISTRY", {})
    weights = tmp_path / "tiny.safetensors"
    save_file(tiny().state_dict(), str(weights))
    register_demo("tiny", tiny, str(weights))
    register_demo("tiny-random", tiny, None)
    assert not load_model("demo:tiny").random_weights
    assert load_model("demo:tiny-random").random_weights


# --- weights ---------------------------------------------------------------------------------


def test_random_init_is_reproducible_by_seed():
    state = torch.get_rng_state()
    first = load_model("torchvision:resnet18", seed=1)
    again = load_model("torchvision:resnet18", seed=1)
    other = load_model("torchvision:resnet18", seed=2)
    assert first.weights_sha256 == again.weights_sha256 != other.weights_sha256
    assert torch.equal(first.module.conv1.weight, again.module.conv1.weight)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone


def test_safetensors_round_trip(tiny_file, tmp_path):
    torch.manual_seed(3)
    source = tiny()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    loaded = load_model("mymodel.py:make", weights=path)
    assert loaded.weights == path and loaded.weights_sha256 == sha256_file(path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)


@pytest.mark.parametrize("wrapper", ["plain", "state_dict", "model"])
def test_pth_round_trip_with_wrappers_and_module_prefix(tiny_file, tmp_path, wrapper):
    torch.manual_seed(4)
    source = tiny()
    state = source.state_dict()
    if wrapper != "plain":
        state = {wrapper: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    loaded = load_model("mymodel.py:make", weights=str(path))
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(loaded.module(x), source.eval()(x))


class _Payload:
    """Unpickling this runs ``_mark``: the code a weights file must never execute."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_mark, (self.marker,))


def _mark(path: str) -> int:
    with open(path, "w") as handle:
        handle.write("executed")
    return 0


def test_pickled_code_is_refused_and_never_run(tiny_file, tmp_path):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "evil.pth"
    torch.save({**tiny().state_dict(), "payload": _Payload(str(marker))}, path)
    with pytest.raises(WeightsError, match="pickled") as info:
        load_model("mymodel.py:make", weights=path)
    assert "_mark" in str(info.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: unsafe loading would run it
    assert marker.exists()


def test_mismatched_weights_name_the_first_bad_key(tiny_file, tmp_path):
    state = tiny().state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "0.bias"}, "missing key '0.bias'"),
        "unexpected": ({**state, "3.weight": torch.zeros(1)}, "unexpected key '3.weight'"),
        "shape": ({**state, "2.weight": torch.zeros(5, 4, 1, 1)}, "key '2.weight' has shape"),
    }
    for name, (bad, expected) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(bad, str(path))
        with pytest.raises(WeightsError) as info:
            load_model("mymodel.py:make", weights=path)
        assert expected in str(info.value), name


def test_unreadable_weights(tiny_file, tmp_path):
    not_a_dict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_a_dict)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"")
    for path, message in [(not_a_dict, "state dict"), (garbage, "cannot read"),
                          (odd, "unknown suffix"), (tmp_path / "none.pth", "not found")]:
        with pytest.raises(WeightsError, match=message):
            load_model("mymodel.py:make", weights=path)


# --- layers ----------------------------------------------------------------------------------


def test_list_layers_shapes(resnet):
    infos = {info.name: info for info in list_layers(resnet, input_size=64)}
    assert infos["layer4"].shape == (512, 2, 2) and infos["layer4"].type == "Sequential"
    assert infos["layer1.0.conv1"].shape == (64, 16, 16)
    assert infos["fc"].shape == (1000,)
    assert "" not in infos


def test_list_layers_restores_modes(resnet):
    resnet.train()
    resnet.layer2.eval()
    before = [m.training for m in resnet.modules()]
    try:
        list_layers(resnet, input_size=32)
        assert [m.training for m in resnet.modules()] == before
    finally:
        resnet.eval()
    assert hook_count(resnet) == 0


def test_list_layers_marks_modules_not_run():
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.spare = nn.Linear(4, 2)

        def forward(self, x):
            return self.used(x)

    infos = list_layers(WithSpare(), example=torch.zeros(1, 4))
    assert [(i.name, i.shape) for i in infos] == [("used", (2,)), ("spare", None)]


def test_resolve_layers(resnet):
    assert resolve_layers(resnet, "layer3, layer4,layer3") == ["layer3", "layer4"]
    assert resolve_layers(resnet, []) == []
    with pytest.raises(LayerError) as info:
        resolve_layers(resnet, ["layer4", "layer5"])
    message = str(info.value)
    assert "'layer5'" in message and "layer4" in message and "more" in message
    assert "unitdissect layers" in info.value.hint
    with pytest.raises(LayerError) as info:
        resolve_layers(tiny(), ["3"])
    assert "valid layers: 0, 1, 2" in str(info.value)


# --- tracing ---------------------------------------------------------------------------------


def test_trace_matches_manual_computation(resnet):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with LayerTrace(resnet, ["layer3", "layer4"]) as trace:
            out = resnet(x)
        h = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        l3 = resnet.layer3(resnet.layer2(resnet.layer1(h)))
        l4 = resnet.layer4(l3)
        assert torch.allclose(trace["layer3"], l3) and torch.allclose(trace["layer4"], l4)
        assert torch.allclose(out, resnet.fc(torch.flatten(resnet.avgpool(l4), 1)))
    assert trace.keys() == ["layer3", "layer4"] and not trace["layer4"].requires_grad
    assert hook_count(resnet) == 0


def test_stop_ends_the_forward_pass_early(resnet):
    calls = []
    counter = resnet.fc.register_forward_hook(lambda *_: calls.append(1))
    try:
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            with LayerTrace(resnet, ["layer3", "layer2"], stop=True) as trace:
                assert trace.run(x) is None
            with LayerTrace(resnet, "layer3", stop=True) as other:
                resnet(x)  # the stop propagates out of the call and is swallowed by `with`
                pytest.fail("the forward pass was not stopped")
            assert calls == []
            assert trace["layer2"].shape == (1, 128, 8, 8)
            assert torch.equal(trace["layer3"], other["layer3"])
            with LayerTrace(resnet, "layer3") as full:
                full.run(x)
            assert calls == [1]
    finally:
        counter.remove()
    assert hook_count(resnet) == 0


def test_hooks_removed_after_an_exception(resnet):
    with pytest.raises(RuntimeError):
        with LayerTrace(resnet, ["layer1", "layer2"]):
            resnet(torch.zeros(1, 5, 32, 32))  # wrong channel count
    assert hook_count(resnet) == 0
    with pytest.raises(ValueError, match="boom"):
        with LayerTrace(resnet, "layer1"):
            raise ValueError("boom")
    assert hook_count(resnet) == 0
    with pytest.raises(LayerError):
        LayerTrace(resnet, ["layer1", "nope"])
    assert hook_count(resnet) == 0


def test_edit_changes_downstream_output(resnet):
    x = torch.randn(1, 3, 64, 64)

    def zero_unit_5(output, layer):
        assert layer == "layer3"
        output = output.clone()
        output[:, 5] = 0
        return output

    with torch.no_grad():
        plain = resnet(x)
        with LayerTrace(resnet, ["layer3", "layer4"], edit=lambda o, n: zero_unit_5(o, n)
                        if n == "layer3" else o) as trace:
            edited = resnet(x)
        manual = resnet.layer4(trace["layer3"])
    assert not torch.allclose(plain, edited)
    assert trace["layer3"][:, 5].abs().sum() == 0 and trace["layer3"][:, 4].abs().sum() > 0
    assert torch.allclose(trace["layer4"], manual)


def test_capture_is_safe_from_in_place_ops_and_can_keep_gradients():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), LayerTrace(model, "0") as trace:
        model(x)
    assert (trace["0"] < 0).any()  # copied before the in-place ReLU ran
    x.requires_grad_(True)
    with LayerTrace(model, ["2"], retain_grad=True) as trace:
        model(x)
    trace["2"].sum().backward()
    assert trace.raw("2").grad is not None and x.grad is not None


def test_vit_tokens_become_maps():
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    layer = "encoder.layers.encoder_layer_11"
    with torch.no_grad(), LayerTrace(vit, layer, stop=True) as trace:
        trace.run(torch.randn(2, 3, 64, 64))
    tokens = trace.raw(layer)
    assert tokens.shape == (2, 17, 768)
    maps = trace[layer]
    assert maps.shape == (2, 768, 4, 4)
    assert torch.equal(maps[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])  # row-major patches
    infos = {i.name: i.shape for i in list_layers(vit, input_size=64)}
    assert infos[layer] == (17, 768)


def test_to_maps_shapes():
    assert to_maps(torch.zeros(2, 7)).shape == (2, 7, 1, 1)
    assert to_maps((torch.zeros(2, 3, 5, 5), torch.zeros(1))).shape == (2, 3, 5, 5)
    with_registers = torch.arange(2 * 21 * 3.0).reshape(2, 21, 3)  # class + 4 registers + 4x4
    maps = to_maps(with_registers)
    assert maps.shape == (2, 3, 4, 4) and torch.equal(maps[:, :, 0, 0], with_registers[:, 5])
    assert to_maps(torch.zeros(1, 16, 8)).shape == (1, 8, 4, 4)  # no class token
    with pytest.raises(LayerError):
        to_maps(torch.zeros(2, 3, 4, 5, 6))
    with pytest.raises(LayerError):
        to_maps(None)


def test_split_at():
    torch.manual_seed(0)
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        head, tail = split_at(nested, "0.0")
        assert torch.allclose(tail(head(x)), nested(x))
        assert torch.allclose(head(x), nested[0][0](x))
        alexnet = torchvision.models.alexnet(weights=None, num_classes=10).eval()
        x = torch.randn(1, 3, 64, 64)
        for layer in ["features.7", "features", "classifier.1"]:
            head, tail = split_at(alexnet, layer)
            assert torch.allclose(tail(head(x)), alexnet(x), atol=1e-6), layer
    assert split_at(torchvision.models.resnet18(weights=None), "layer4") is None


# --- command line ----------------------------------------------------------------------------


def test_layers_cli(capsys):
    from builder.cli import layers as layers_cli

    parser = argparse.ArgumentParser(prog="unitdissect")
    layers_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["layers", "torchvision:resnet18", "--input-size", "64"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["layer4"] == ["Sequential", "512x2x2"]
    assert rows["fc"] == ["Linear", "1000"]
    assert rows["layer"] == ["type", "output", "shape"]
