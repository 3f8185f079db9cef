"""``unitdissect layers``: list a model's layers (module paths) with their output shapes.

Every model spec a command takes is accepted: classifiers get one blank image, generators
(``demo:generator``, ``progan:FILE``, ``stylegan2:FILE``, or any model given ``--latent-dim``)
get latent 0 of ``--seed``, drawn by the sampler that ``unitdissect gan`` uses.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import seed_arg

if TYPE_CHECKING:  # the CLI imports torch only when a command runs
    import torch

    from ..models import LoadedModel

#: Spec prefixes of checkpoint adapters, which only the generator loader knows.
GENERATOR_ADAPTERS = ("progan", "stylegan2")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``layers`` command."""
    p = subparsers.add_parser(
        "layers",
        help="list a model's layers with their output shapes",
        description="List every layer (module path) of a model with its type and output "
        "shape, from one forward pass on a blank image (for a generator: latent 0 of "
        "--seed). These names are what --layers takes. MODEL is torchvision:NAME, demo:NAME, "
        "PACKAGE.MODULE:CALLABLE, path/to/file.py:CALLABLE, or a generator checkpoint "
        "progan:FILE or stylegan2:FILE.",
    )
    p.add_argument("spec", metavar="MODEL",
                   help="the model spec, e.g. torchvision:resnet18 or progan:churches.pth")
    p.add_argument("--weights", metavar="FILE",
                   help="state dict (.pth, .pt or .safetensors); default: the model's own "
                   "weights, or a random initialisation (progan: and stylegan2: checkpoints "
                   "are their own weights)")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="N",
                   help="seed of the random initialisation when there are no weights, and of "
                   "a generator's latent (default 0)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="side of the square input image in pixels (default: the model's own, "
                   "e.g. 224; not for generators)")
    p.add_argument("--latent-dim", type=int, metavar="N",
                   help="treat MODEL as a generator taking N-d latents (default: a "
                   "generator's declared size)")
    p.set_defaults(run=run)


def _is_adapter(spec: str) -> bool:
    return spec.partition(":")[0] in GENERATOR_ADAPTERS


def _is_generator(loaded: LoadedModel) -> bool:
    """A generator by its registry kind, or by declaring its latent size (``z_dim``)."""
    declared = isinstance(getattr(loaded.module, "z_dim", None), int)
    return loaded.kind == "generator" or (loaded.input_shape is None and declared)


def _load(args: argparse.Namespace) -> tuple[LoadedModel, torch.Tensor, str]:
    """The model, its example input, and how to describe that input."""
    from ..errors import ConfigError
    from ..generator import load_generator
    from ..models import load_model

    if args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size must be positive, not {args.input_size}")
    if args.latent_dim is not None and args.latent_dim < 1:
        raise ConfigError(f"--latent-dim must be positive, not {args.latent_dim}")
    if _is_adapter(args.spec):
        model = args.spec  # only load_generator reads these checkpoints
    else:
        model = load_model(args.spec, weights=args.weights, seed=args.seed)
        if args.latent_dim is None and not _is_generator(model):
            example = model.example_input(input_size=args.input_size)
            return model, example, "x".join(str(n) for n in example.shape[1:]) + " input"
    if args.input_size is not None:
        raise ConfigError(f"--input-size is for image models; {args.spec} is a generator, "
                          "whose input is a latent", hint="drop --input-size (or give "
                          "--latent-dim N)")
    generator = load_generator(model, weights=args.weights if _is_adapter(args.spec) else None,
                               seed=args.seed, latent_seed=args.seed, latent_dim=args.latent_dim)
    size = "x".join(str(n) for n in generator.latent.shape)
    return generator.model, generator.latents([0]), f"{size} latent (sample 0, seed {args.seed})"


def _layers(loaded: LoadedModel, example: torch.Tensor, given: str) -> list:
    """The layer table of one forward pass; a failing pass is a one-line ConfigError."""
    from ..errors import ConfigError, UnitDissectError
    from ..models import list_layers

    try:
        return list_layers(loaded.module, example=example)
    except UnitDissectError:
        raise
    except Exception as e:  # the model rejected the example: say which input it was given
        first = (str(e).strip().splitlines() or [""])[0]
        raise ConfigError(f"{loaded.spec}: the forward pass on one {given} failed: "
                          f"{type(e).__name__}: {first}",
                          hint="give --input-size N for an image model, or --latent-dim N "
                          "for a generator") from e


def run(args: argparse.Namespace) -> int:
    """Load the model, run one blank input (or latent) through it, and print the layer table."""
    loaded, example, given = _load(args)
    layers = _layers(loaded, example, given)
    rows = [("layer", "type", "output shape")]
    for info in layers:
        shape = "x".join(str(n) for n in info.shape) if info.shape is not None else "(not run)"
        rows.append((info.name, info.type, shape))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, kind, shape in rows:
        print(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape}")
    print(f"\n{len(layers)} layers of {loaded.spec}; shapes for one {given}, batch omitted")
    return 0
