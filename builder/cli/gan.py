"""``unitdissect gan``: dissect a generator's layers over segmented samples; ablate and insert."""

from __future__ import annotations

import argparse
import sys

from . import seed_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gan`` command."""
    p = subparsers.add_parser(
        "gan",
        help="dissect a GAN generator's layers; remove and insert concepts by their units",
        description="Generate --samples images from fixed seeds, label them with --segmenter "
        "(cached: a rerun segments only new samples), dissect --layers against those labels, "
        "then for the most frequent object concepts remove their top-N units (N = 0..30) and "
        "measure the fraction of the concept's pixels that remain (paired 99%% interval), and "
        "force their top units on at each location of the feature map and measure what is "
        "added, by context. Writes the dissection and RUN_DIR/generator/<layer>/ (see "
        "docs/generator.md). Rerunning the same command skips finished layers.",
    )
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="demo:generator, progan:FILE, stylegan2:FILE, PACKAGE.MODULE:CALLABLE "
                   "or FILE.py:CALLABLE (a module from latents to RGB images)")
    p.add_argument("--weights", metavar="FILE",
                   help="the generator's state dict (.pth or .safetensors); default: its own "
                   "weights or a random initialisation under --seed")
    p.add_argument("--layers", required=True, metavar="A,B",
                   help="comma-separated layer names (see `unitdissect layers MODEL`)")
    p.add_argument("--segmenter", default="demo:segmenter", metavar="SPEC",
                   help="demo:segmenter (default), torchvision:NAME or hf:PATH")
    p.add_argument("--segmenter-weights", metavar="FILE",
                   help="weights of a torchvision segmenter")
    p.add_argument("--samples", type=int, default=1000, metavar="N",
                   help="generated samples (sample i always comes from the same latent; "
                   "default 1000)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    p.add_argument("--force", action="store_true",
                   help="replace a run of another generator at --out whole (without it, such "
                        "a run is refused)")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="N",
                   help="latent seed (and random initialisation without weights; default 0)")
    p.add_argument("--latent-dim", type=int, metavar="N",
                   help="latent size (default: the model's declared one)")
    p.add_argument("--latent-distribution", default="normal", metavar="normal|uniform|truncated",
                   help="default normal")
    p.add_argument("--truncation", type=float, metavar="T",
                   help="bound of --latent-distribution truncated (default 2); StyleGAN's "
                   "truncation trick is --truncation-psi")
    p.add_argument("--truncation-psi", type=float, default=1.0, metavar="PSI",
                   help="the truncation trick in W space, as rosinality's generate.py "
                   "--truncation: w = w_avg + PSI * (w - w_avg), PSI in [0, 1] (default 1: "
                   "off; stylegan2: generators)")
    p.add_argument("--truncation-mean", type=int, default=4096, metavar="N",
                   help="w_avg is the mean w of N latents when the checkpoint stores no "
                   "latent_avg (default 4096)")
    p.add_argument("--output-range", metavar="LOW,HIGH",
                   help="range of the generator's output pixels (default -1,1)")
    p.add_argument("--concepts", metavar="A,B",
                   help="concepts to ablate and insert (default: the --num-concepts most "
                   "frequent object concepts)")
    p.add_argument("--num-concepts", type=int, default=5, metavar="K", help="default 5")
    p.add_argument("--max-units", type=int, default=30, metavar="N",
                   help="ablate N = 0..N units (default 30)")
    p.add_argument("--counts", metavar="0,1,2,...",
                   help="the values of N to measure instead of 0..--max-units")
    p.add_argument("--ablation-samples", type=int, metavar="N",
                   help="samples measured by the ablation (default: all)")
    p.add_argument("--no-insertion", dest="insertion", action="store_false",
                   help="skip the insertion experiment")
    p.add_argument("--insertion-units", type=int, default=20, metavar="N", help="default 20")
    p.add_argument("--insertion-percentile", type=float, default=99.5, metavar="P",
                   help="units are forced to this percentile of their activations (default "
                   "99.5)")
    p.add_argument("--insertion-samples", type=int, default=64, metavar="N", help="default 64")
    p.add_argument("--insertion-patch", type=int, default=1, metavar="CELLS",
                   help="side of the forced window, in feature-map cells (default 1)")
    p.add_argument("--insertion-stride", type=int, metavar="CELLS",
                   help="between windows (default: at most --insertion-windows per side)")
    p.add_argument("--insertion-windows", type=int, default=8, metavar="N",
                   help="the default stride places at most N windows per side (default 8)")
    p.add_argument("--science-units", type=int, default=20, metavar="N",
                   help="the science check removes N units (default 20)")
    p.add_argument("--gallery-size", type=int, default=8, metavar="N",
                   help="images per before/after strip, 0 for none (default 8)")
    p.add_argument("--mask-size", type=int, metavar="N",
                   help="label resolution (default: the generated images' size)")
    p.add_argument("--quantile", type=float, default=0.005, metavar="Q",
                   help="dissection: the top quantile of each unit (default 0.005)")
    p.add_argument("--iou-threshold", type=float, default=0.04, metavar="X", help="default 0.04")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="default 32")
    p.add_argument("--images-per-pass", type=int, default=128, metavar="N",
                   help="edited images per pass through the rest of the generator (default 128)")
    p.add_argument("--strategy", default="auto", metavar="auto|split|graft",
                   help="how the rest of the generator runs on edited activations (default "
                   "auto)")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|mps",
                   help="default auto: cuda, else mps, else cpu")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="where generated samples and their labels are cached (default "
                   "data/samples)")
    p.set_defaults(run=run)


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _counts(text: str | None) -> tuple[int, ...] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--counts must be integers separated by commas, got {text!r}") \
            from None


def _pair(text: str | None) -> tuple[float, float] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--output-range must be LOW,HIGH, got {text!r}") from None
    return low, high


def _truncation_bound(args: argparse.Namespace) -> float:
    """``--truncation``, refused where it would be ignored: StyleGAN users mean psi by it."""
    from ..errors import ConfigError

    if args.truncation is None:
        return 2.0
    if args.latent_distribution != "truncated":
        raise ConfigError("--truncation is the bound of --latent-distribution truncated, "
                          f"which is not in use (--latent-distribution {args.latent_distribution})",
                          hint="for StyleGAN's truncation trick use --truncation-psi PSI")
    return args.truncation


def run(args: argparse.Namespace) -> int:
    """Validate the options, run the generator experiments, print the science check."""
    import json

    from ..generator import GanOptions, run_gan
    from . import layer_list, reproducing_command

    layers = layer_list(args.layers)
    options = GanOptions(
        seed=args.seed, batch_size=args.batch_size, device=args.device,
        concepts=_names(args.concepts), num_concepts=args.num_concepts,
        max_units=args.max_units, ablation_counts=_counts(args.counts),
        ablation_samples=args.ablation_samples, insertion=args.insertion,
        insertion_units=args.insertion_units, insertion_percentile=args.insertion_percentile,
        insertion_samples=args.insertion_samples, insertion_patch=args.insertion_patch,
        insertion_stride=args.insertion_stride, insertion_windows=args.insertion_windows,
        science_units=args.science_units,
        gallery_size=args.gallery_size, mask_size=args.mask_size, quantile=args.quantile,
        iou_threshold=args.iou_threshold, images_per_pass=args.images_per_pass,
        strategy=args.strategy, cache_dir=args.cache_dir, weights=args.weights,
        latent_dim=args.latent_dim, latent_distribution=args.latent_distribution,
        truncation=_truncation_bound(args), output_range=_pair(args.output_range),
        truncation_psi=args.truncation_psi, truncation_mean=args.truncation_mean,
        segmenter_weights=args.segmenter_weights)
    out = run_gan(args.model, layers, args.segmenter, args.samples, args.out,
                  options, progress=sys.stderr.isatty(), replace=args.force,
                  command=reproducing_command("gan", args, {"insertion": "--no-insertion"}))
    for layer in layers:
        folder = out / "generator" / layer
        science = json.loads((folder / "science.json").read_text(encoding="utf-8"))
        figures = ", ".join(f"{c['concept']} {c['removed']:.0%}" for c in science["concepts"])
        print(f"{layer}: removing {science['n_removed']} units removes {figures} of the "
              f"concept's pixels ({science['samples']} samples); most frequent object "
              f"{science['concept']}: {'pass' if science['pass'] else 'FAIL'} at "
              f"{science['required_removed']:.0%}")
    print(f"results in {out}")
    return 0
