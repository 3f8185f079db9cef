"""``unitdissect ablate``: switch off units of a classifier layer; measure what each class loses."""

from __future__ import annotations

import argparse
import sys

from . import seed_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ablate`` command."""
    p = subparsers.add_parser(
        "ablate",
        help="ablate the units of a classifier layer, one at a time and by importance",
        description="Remove (zero) every unit of a layer alone and measure each class's balanced "
        "accuracy; rank units per class on one split and report removal curves, the units "
        "important to many classes, a check against random units and, optionally, targeted "
        "adversarial attacks on another split. Writes RUN_DIR/ablation/<layer>/ (see "
        "docs/ablation.md); use the dissection's run directory to see both in the site. "
        "Rerunning the same command resumes; finished files are kept.",
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="torchvision:NAME, demo:NAME, PACKAGE.MODULE:CALLABLE or FILE.py:CALLABLE")
    p.add_argument("--weights", metavar="FILE",
                   help="state dict (.pth or .safetensors); default: the model's own weights "
                   "or a random initialisation under --seed")
    p.add_argument("--layer", required=True, metavar="LAYER",
                   help="the layer whose units are ablated (see `unitdissect layers MODEL`)")
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="toyworld, broden:PATH, hf:NAME, or a concept dataset folder; its scene "
                   "labels are the classes' ground truth")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="the run directory (usually the dissection's)")
    p.add_argument("--classes", metavar="FILE",
                   help="the model's class names in output order, one per line (default: the "
                   "model's class_names attribute)")
    p.add_argument("--rank-split", default="train", metavar="train|val|all",
                   help="split on which units are ranked per class (default train)")
    p.add_argument("--eval-split", default="val", metavar="train|val|all",
                   help="split on which results are reported (default val)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="default 64")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="default auto: cuda, else mps, else cpu")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="N",
                   help="seed of the random initialisation (without weights), of the random "
                   "unit draws and of the attacked images (default 0)")
    p.add_argument("--mean", metavar="R,G,B",
                   help="input normalisation mean (default: the model's, else ImageNet's)")
    p.add_argument("--std", metavar="R,G,B", help="input normalisation std (same default)")
    p.add_argument("--adversarial", type=int, default=2, metavar="N",
                   help="images to attack (PGD and Carlini-Wagner), 0 for none (default 2)")
    p.add_argument("--pgd-steps", type=int, default=40, metavar="N",
                   help="PGD steps (L-infinity radius 8/255; default 40)")
    p.add_argument("--cw-steps", type=int, default=100, metavar="N",
                   help="Carlini-Wagner Adam steps per search over c (3 searches; default 100)")
    p.add_argument("--random-draws", type=int, default=10, metavar="N",
                   help="draws of random units per count (default 10)")
    p.add_argument("--science-k", type=int, default=5, metavar="K",
                   help="the science check removes each class's K most important units against "
                   "K random ones (default 5)")
    p.add_argument("--strategy", default="auto", metavar="auto|split|graft|full",
                   help="how the rest of the network runs on the cached layer output "
                   "(default auto; full = one full forward pass per ablation)")
    p.add_argument("--cache-memory", default="2GiB", metavar="SIZE",
                   help="memory for keeping the layer's activations between sweeps "
                   "(default 2GiB; beyond it the network runs up to the layer again)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="image decoding processes (default 0: in the main process)")
    p.set_defaults(run=run)


def _class_names(path: str | None) -> list[str] | None:
    from pathlib import Path

    from ..errors import ConfigError

    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"--classes: cannot read {path}: {e.strerror or e}") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise ConfigError(f"--classes: {path} lists no class")
    return names


def _normalisation(args: argparse.Namespace, parse_triple) -> tuple:
    """``--mean``/``--std``, else those the run directory's dissection used (its preset's),
    so that the ablation sees the inputs the labels were made with; else None (the model's)."""
    import json
    from pathlib import Path

    mean, std = parse_triple(args.mean, "--mean"), parse_triple(args.std, "--std")
    try:
        dissected = json.loads((Path(args.out) / "manifest.json").read_text(encoding="utf-8"))
        options = dissected.get("options", {})
    except (OSError, ValueError, AttributeError):
        return mean, std
    return (mean or tuple(options.get("mean") or ()) or None,
            std or tuple(options.get("std") or ()) or None)


def run(args: argparse.Namespace) -> int:
    """Validate the options, load the model and the probe set, ablate, print a summary."""
    import json

    from ..datasets import resolve_probe_set
    from ..dissect.runner import resolve_device
    from ..intervene import AblationOptions, run_ablation
    from ..models import demo_registry  # noqa: F401 - registers demo:classifier
    from ..models import load_model, resolve_layers
    from .dissect import parse_size, parse_triple
    from . import reproducing_command

    mean, std = _normalisation(args, parse_triple)
    options = AblationOptions(
        rank_split=args.rank_split, eval_split=args.eval_split, batch_size=args.batch_size,
        device=args.device, seed=args.seed, mean=mean, std=std, strategy=args.strategy,
        random_draws=args.random_draws, adversarial=args.adversarial,
        pgd_steps=args.pgd_steps, cw_steps=args.cw_steps, science_k=args.science_k,
        cache_memory=parse_size(args.cache_memory, "--cache-memory"), num_workers=args.workers)
    classes = _class_names(args.classes)
    device = resolve_device(options.device)
    progress = sys.stderr.isatty()
    model = load_model(args.model, weights=args.weights, seed=args.seed, device=str(device))
    resolve_layers(model.module, [args.layer])  # a bad layer fails before the dataset loads
    probe = resolve_probe_set(args.dataset, progress=progress)
    folder = run_ablation(model, args.layer, probe, args.out, options, class_names=classes,
                          progress=progress, dataset_spec=args.dataset,
                          command=reproducing_command("ablate", args))
    baseline = json.loads((folder / "baseline.json").read_text(encoding="utf-8"))
    science = json.loads((folder / "science.json").read_text(encoding="utf-8"))
    print(f"{args.layer}: {baseline['units']} units, {len(baseline['classes'])} classes, "
          f"{baseline['counts']['eval']['images']} {options.eval_split} images; overall "
          f"accuracy {baseline['accuracy']:.1%}")
    print(f"removing a class's {science['k']} most important units (ranked on "
          f"{options.rank_split}) lowers it >= {science['factor']:g}x more than {science['k']} "
          f"random units for {science['passed_classes']}/{science['classes']} classes "
          f"({science['fraction']:.0%}; {'pass' if science['pass'] else 'FAIL'} at "
          f"{science['required_fraction']:.0%})")
    adversarial = folder / "adversarial.json"
    if options.adversarial and adversarial.is_file():
        report = json.loads(adversarial.read_text(encoding="utf-8"))
        for method, info in report["summary"].items():
            print(f"{method}: {info['successes']}/{info['attacks']} attacks reached the target")
    print(f"results in {folder}")
    return 0
