"""``unitdissect dissect``: label every unit of some layers with the concept it detects."""

from __future__ import annotations

import argparse
import re
import sys

from . import seed_arg

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dissect`` command."""
    p = subparsers.add_parser(
        "dissect",
        help="label the units of some layers with the concepts they detect",
        description="Network dissection: threshold each unit's activation maps at its top "
        "quantile, compare the masks with every concept of the probe dataset by IoU, and write "
        "a run directory (docs/results-format.md). Rerunning the same command resumes an "
        "interrupted run; finished layers are skipped.",
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="torchvision:NAME, demo:NAME, PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE")
    p.add_argument("--weights", metavar="FILE",
                   help="state dict (.pth or .safetensors); default: the model's own weights "
                   "or a random initialisation under --seed")
    p.add_argument("--layers", required=True, metavar="A,B",
                   help="comma-separated layer names (see `unitdissect layers MODEL`)")
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="toyworld, broden:PATH, hf:NAME, or a concept dataset folder")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    p.add_argument("--force", action="store_true",
                   help="replace a run of another model at --out whole (without it, such a "
                        "run is refused; a run of the same model is resumed or extended)")
    p.add_argument("--method", default="unitdissect", metavar="unitdissect|netdissect|pnas",
                   help="preset of the method's choices (docs/method.md, section 8): "
                   "unitdissect (default: this project's), netdissect (NetDissect-Lite's: "
                   "quantile 0.005 of the raw maps, overlap union, its input normalisation), "
                   "pnas (davidbau/dissect's: quantile 0.01, zeros beyond the edges, plain "
                   "union, ImageNet normalisation); the options below override its choices")
    p.add_argument("--quantile", type=float, metavar="Q",
                   help="top quantile of activations that makes a unit's mask (unitdissect "
                   "0.005, netdissect 0.005, pnas 0.01)")
    p.add_argument("--iou-threshold", type=float, metavar="X",
                   help="a unit detects its best concept when their IoU exceeds this "
                   "(every preset: 0.04)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="default 32")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="default auto: cuda, else mps, else cpu")
    p.add_argument("--mean", metavar="R,G,B",
                   help="input normalisation mean (default: the preset's; unitdissect: the "
                   "model's, else ImageNet's)")
    p.add_argument("--std", metavar="R,G,B", help="input normalisation std (same default)")
    p.add_argument("--split", default="all", metavar="all|train|val",
                   help="probe images to use (default all)")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="N",
                   help="seed of the random initialisation (without weights) and of the "
                   "quantile sketch's sampling (default 0)")
    p.add_argument("--topk", type=int, default=12, metavar="K",
                   help="top images kept per unit (default 12)")
    p.add_argument("--threshold-on", metavar="upsampled|raw",
                   help="take the quantile over the upsampled maps (unitdissect, pnas) or the "
                   "raw maps (netdissect)")
    p.add_argument("--upsampling", metavar="bilinear|bilinear-zeros",
                   help="bilinear, the edge activations repeated beyond the grid (unitdissect, "
                   "netdissect), or zeros beyond it (bilinear-zeros: pnas)")
    p.add_argument("--union", metavar="category|overlap|all",
                   help="images whose mask area enters a concept's union: those annotated "
                   "for its category (unitdissect), those where the mask overlaps an "
                   "annotation of its category (netdissect), or all (pnas)")
    p.add_argument("--no-category-aware", dest="category_aware", action="store_const",
                   const=False, help="the same as --union all")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="image decoding processes (default 0: in the main process)")
    p.add_argument("--histogram-bins", type=int, default=64, metavar="N", help="default 64")
    p.add_argument("--quantile-memory", default="1GiB", metavar="SIZE",
                   help="memory for exact thresholds; beyond it a sampling sketch with a "
                   "documented error is used (default 1GiB)")
    p.add_argument("--cache-memory", default="2GiB", metavar="SIZE",
                   help="memory for keeping activations between the passes (default 2GiB)")
    p.add_argument("--cache-disk", default="32GiB", metavar="SIZE",
                   help="disk space (under RUN_DIR/checkpoints/) for the activations beyond "
                   "--cache-memory, at most the free space less 1GiB; batches beyond both "
                   "are recomputed (default 32GiB; 0 = none)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="batches between checkpoints (default 50)")
    p.set_defaults(run=run)


def parse_size(text: str, flag: str) -> int:
    """``1GiB``, ``512MB``, ``4096`` -> bytes; ConfigError naming ``flag`` otherwise."""
    from ..errors import ConfigError

    match = _SIZE.fullmatch(str(text))
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"{flag} must be a size like 512MiB or 2GB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_triple(text: str | None, flag: str) -> tuple[float, ...] | None:
    """``0.5,0.5,0.5`` -> a tuple of three floats; ConfigError naming ``flag`` otherwise."""
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"{flag} must be three comma-separated numbers R,G,B, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    """Validate the options, load the model and the probe set, dissect, print a summary."""
    import json

    from ..datasets import resolve_probe_set
    from ..dissect import DissectOptions, dissect, resolve_device
    from ..models import load_model
    from . import layer_list, reproducing_command

    layers = layer_list(args.layers)
    options = DissectOptions(
        method=args.method, quantile=args.quantile, iou_threshold=args.iou_threshold,
        threshold_on=args.threshold_on, upsampling=args.upsampling, union=args.union,
        category_aware=args.category_aware, split=args.split, batch_size=args.batch_size,
        device=args.device, mean=parse_triple(args.mean, "--mean"),
        std=parse_triple(args.std, "--std"), seed=args.seed, topk=args.topk,
        histogram_bins=args.histogram_bins,
        quantile_memory=parse_size(args.quantile_memory, "--quantile-memory"),
        cache_memory=parse_size(args.cache_memory, "--cache-memory"),
        cache_disk=parse_size(args.cache_disk, "--cache-disk"),
        num_workers=args.workers, checkpoint_every=args.checkpoint_every)
    device = resolve_device(options.device)
    progress = sys.stderr.isatty()
    model = load_model(args.model, weights=args.weights, seed=args.seed, device=str(device))
    probe = resolve_probe_set(args.dataset, progress=progress)
    out = dissect(model, layers, probe, args.out, options, progress=progress,
                  dataset_spec=args.dataset, replace=args.force,
                  command=reproducing_command(
                      "dissect", args, {"category_aware": "--no-category-aware"}))
    for name in layers:
        info = json.loads((out / "layers" / name / "layer.json").read_text(encoding="utf-8"))
        detectors = sum(info["detectors"].values())
        unique = ", ".join(f"{c} {n}" for c, n in info["unique_detectors"].items() if n)
        print(f"{name}: {detectors}/{info['units']} units detect a concept"
              + (f" (unique concepts: {unique})" if unique else ""))
    print(f"results in {out}")
    return 0
