"""``unitdissect demo``: list the shipped demo models, and retrain them on toy-world scenes."""

from __future__ import annotations

import argparse

from . import seed_arg

MODELS = ("classifier", "segmenter", "generator")  # "all" trains them in this order


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command and its ``train`` and ``list`` subcommands."""
    p = subparsers.add_parser(
        "demo", help="list or retrain the demo models (demo:classifier, ...)",
        description="The demo models are small networks trained on toy-world scenes: "
        "demo:classifier (scene classifier), demo:generator (GAN) and demo:segmenter.")
    sub = p.add_subparsers(dest="demo_command", metavar="SUBCOMMAND", required=True)

    t = sub.add_parser(
        "train", help="train a demo model with a fixed seed",
        description="Train a demo model on toy-world scenes and write NAME.safetensors and "
        "NAME.json (metrics, timings, config, this command) into --out. 'all' trains the "
        "classifier, the segmenter, then the generator (whose quality is measured with the "
        "other two). The defaults reproduce the shipped weights (see docs/models.md).")
    t.add_argument("model", choices=[*MODELS, "all"], metavar="MODEL",
                   help="classifier, generator, segmenter or all")
    t.add_argument("--out", default="data/demo", metavar="DIR",
                   help="output folder (default data/demo, where the shipped weights live)")
    t.add_argument("--device", default="auto",
                   help="auto (CUDA when available, else CPU), cpu or cuda (default auto)")
    t.add_argument("--seed", type=seed_arg, default=0, metavar="N", help="random seed (default 0)")
    t.add_argument("--epochs", type=int, metavar="N",
                   help="epochs (classifier, segmenter; default: the shipped run's)")
    t.add_argument("--steps", type=int, metavar="N",
                   help="adversarial steps (generator; default: the shipped run's)")
    t.add_argument("--n-train", type=int, metavar="N", help="training scenes to render")
    t.add_argument("--n-val", type=int, metavar="N",
                   help="validation scenes (classifier, segmenter)")
    t.add_argument("--batch-size", type=int, metavar="N", help="batch size")
    t.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                   help="bfloat16 mixed precision: auto uses it where the hardware runs it "
                   "natively (default auto)")
    t.add_argument("--workers", type=int, default=2, metavar="N",
                   help="processes rendering the scenes (default 2)")
    t.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's own choice); 1 can be much "
                   "faster on a CPU that other jobs share")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(run=run)

    ls = sub.add_parser("list", help="the registered demo models and their weights")
    ls.set_defaults(run=run_list)


def _command(args: argparse.Namespace, model: str) -> str:
    """The canonical command line that reproduces this run."""
    parts = ["unitdissect", "demo", "train", model, "--out", str(args.out),
             "--seed", str(args.seed), "--device", args.device]
    for flag in ("epochs", "steps", "n_train", "n_val", "batch_size"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if args.amp != "auto":
        parts += ["--amp", args.amp]
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    return " ".join(parts)


def _config(model: str, args: argparse.Namespace):  # noqa: ANN202 - one of three dataclasses
    from ..errors import ConfigError

    if model == "classifier":
        from ..train.classifier import ClassifierConfig as Config
    elif model == "segmenter":
        from ..train.segmenter import SegmenterConfig as Config
    else:
        from ..train.generator import GeneratorConfig as Config
    overrides = {"seed": args.seed, "device": args.device, "amp": args.amp,
                 "workers": args.workers}
    for flag in ("epochs", "steps", "n_train", "n_val", "batch_size"):
        value = getattr(args, flag)
        if value is None:
            continue
        if flag not in Config.__dataclass_fields__:
            if args.model != "all":
                raise ConfigError(f"--{flag.replace('_', '-')} does not apply to the {model}")
            continue
        if value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, not {value}")
        overrides[flag] = value
    if args.workers < 1:
        raise ConfigError(f"--workers must be positive, not {args.workers}")
    return Config(**overrides)


def run(args: argparse.Namespace) -> int:
    """Train the model(s) and print where the weights went and their headline metric."""
    import sys

    from ..train import resolve_device

    import torch

    from ..errors import ConfigError

    resolve_device(args.device)  # fail early on a bad --device
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, not {args.threads}")
        torch.set_num_threads(args.threads)
    models = MODELS if args.model == "all" else (args.model,)
    configs = {model: _config(model, args) for model in models}  # validate all first
    progress = not args.no_progress and sys.stderr.isatty()
    for model, config in configs.items():
        if model == "classifier":
            from ..train.classifier import train_classifier as train
        elif model == "segmenter":
            from ..train.segmenter import train_segmenter as train
        else:
            from ..train.generator import train_generator as train
        result = train(config, args.out, progress=progress, command=_command(args, model))
        print(f"{result.weights}  ({_headline(result.metrics)}; "
              f"{result.seconds['total']:.0f}s on {result.device})")
    return 0


def _headline(metrics: dict) -> str:
    if "val_accuracy" in metrics:
        return f"val accuracy {metrics['val_accuracy']:.3f}"
    if "object" in metrics:
        return (f"object pixel accuracy {metrics['object']['pixel_accuracy']:.3f}, mean IoU "
                + ", ".join(f"{c} {metrics[c]['mean_iou']:.3f}"
                            for c in ("object", "part", "material")))
    quality = metrics.get("quality", {}).get("frechet_classifier_conv5_3")
    if quality:
        return (f"Fréchet distance {quality['generated']:.2f} "
                f"(uniform noise {quality['uniform noise']:.2f})")
    last = metrics.get("history", [{}])[-1]
    return f"loss_d {last.get('loss_d', 0):.3f}, loss_g {last.get('loss_g', 0):.3f}"


def run_list(args: argparse.Namespace) -> int:
    """Print each demo model with its kind, input, and whether its weights are present."""
    from ..models import get_demo, list_demos

    for name in list_demos():
        entry = get_demo(name)
        path = entry.weights_path()
        state = "random init" if path is None else (str(path) if path.is_file() else
                                                     f"MISSING {path}")
        shape = entry.input_shape or (3, entry.input_size, entry.input_size)
        print(f"demo:{name:<12} {entry.kind:<10} input {'x'.join(map(str, shape)):<10} {state}")
    return 0
