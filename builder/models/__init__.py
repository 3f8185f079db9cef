"""Models: ``--model`` specs, safe weights (and foreign layouts), layer names and shapes, and
tracing by hooks."""

from .demo import DemoModel, demo_data_dir, get_demo, list_demos, register_demo
from .layers import LayerInfo, layer_names, list_layers, resolve_layers
from .layouts import LAYOUTS, Layout, adapt_layout
from .spec import LoadedModel, ModelSpec, load_model, parse_spec, torchvision_names
from .trace import LayerTrace, split_at, to_maps
from .weights import (
    as_state_dict,
    load_weights,
    load_weights_info,
    read_checkpoint,
    read_state_dict,
    sha256_file,
    state_dict_sha256,
)

__all__ = [
    "LAYOUTS",
    "DemoModel",
    "LayerInfo",
    "LayerTrace",
    "Layout",
    "LoadedModel",
    "ModelSpec",
    "adapt_layout",
    "as_state_dict",
    "demo_data_dir",
    "get_demo",
    "layer_names",
    "list_demos",
    "list_layers",
    "load_model",
    "load_weights",
    "load_weights_info",
    "parse_spec",
    "read_checkpoint",
    "read_state_dict",
    "register_demo",
    "resolve_layers",
    "sha256_file",
    "split_at",
    "state_dict_sha256",
    "to_maps",
    "torchvision_names",
]
