"""``unitdissect layers``: list a model's layers (module paths) with their output shapes."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``layers`` command."""
    p = subparsers.add_parser(
        "layers",
        help="list a model's layers with their output shapes",
        description="List every layer (module path) of a model with its type and output "
        "shape, from one forward pass on a blank input. These names are what --layers takes. "
        "MODEL is torchvision:NAME, demo:NAME, PACKAGE.MODULE:CALLABLE or "
        "path/to/file.py:CALLABLE.",
    )
    p.add_argument("spec", metavar="MODEL", help="the model spec, e.g. torchvision:resnet18")
    p.add_argument("--weights", metavar="FILE",
                   help="state dict (.pth, .pt or .safetensors); default: the model's own "
                   "weights, or a random initialisation")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random initialisation when there are no weights (default 0)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="side of the square input image in pixels (default: the model's own, "
                   "e.g. 224)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, run one blank input through it, and print the layer table."""
    from ..errors import ConfigError
    from ..models import list_layers, load_model

    if args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size must be positive, not {args.input_size}")
    loaded = load_model(args.spec, weights=args.weights, seed=args.seed)
    example = loaded.example_input(input_size=args.input_size)
    layers = list_layers(loaded.module, example=example)
    rows = [("layer", "type", "output shape")]
    for info in layers:
        shape = "x".join(str(n) for n in info.shape) if info.shape is not None else "(not run)"
        rows.append((info.name, info.type, shape))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, kind, shape in rows:
        print(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape}")
    given = "x".join(str(n) for n in example.shape[1:])
    print(f"\n{len(layers)} layers of {loaded.spec}; shapes for one {given} input, batch omitted")
    return 0
