"""Models: ``--model`` specs, safe weights, layer names and shapes, and tracing by hooks."""

from .demo import DemoModel, demo_data_dir, get_demo, list_demos, register_demo
from .layers import LayerInfo, layer_names, list_layers, resolve_layers
from .spec import LoadedModel, ModelSpec, load_model, parse_spec, torchvision_names
from .trace import LayerTrace, split_at, to_maps
from .weights import load_weights, read_state_dict, sha256_file, state_dict_sha256

__all__ = [
    "DemoModel",
    "LayerInfo",
    "LayerTrace",
    "LoadedModel",
    "ModelSpec",
    "demo_data_dir",
    "get_demo",
    "layer_names",
    "list_demos",
    "list_layers",
    "load_model",
    "load_weights",
    "parse_spec",
    "read_state_dict",
    "register_demo",
    "resolve_layers",
    "sha256_file",
    "split_at",
    "state_dict_sha256",
    "to_maps",
    "torchvision_names",
]
