"""``unitdissect dataset``: build, inspect, show and export concept datasets."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` command and its subcommands."""
    p = subparsers.add_parser("dataset", help="build, inspect and export probe datasets",
                              description="Build, inspect and export concept datasets.")
    sub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)

    b = sub.add_parser("build", help="build (or fetch from the cache) a concept dataset",
                       description="Build a concept dataset from one or more sources, merged "
                       "into one vocabulary. Sources: toyworld[:n=N,seed=S,size=PX], "
                       "broden:PATH, hf:NAME (ade20k, dtd, pascal-context, pascal-part, scene-parse-150), "
                       "images:PATH (with --segmenter).")
    b.add_argument("sources", nargs="+", metavar="SOURCE")
    b.add_argument("--out", help="dataset folder (default: data/datasets/<name>-<fingerprint>)")
    b.add_argument("--image-size", type=int, help="image side in pixels (default: the size "
                   "the sources ship, e.g. a Broden release's or the toy world's; else 224)")
    b.add_argument("--mask-size", type=int, help="annotation side in pixels (default: the "
                   "sources' own, else 112)")
    b.add_argument("--min-frequency", type=int,
                   help="drop concepts in fewer images (default: keep every concept of a "
                   "Broden release; else 10, as Broden was made)")
    b.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of images in the val split, by a stable hash of the id")
    b.add_argument("--image-format", choices=["original", "png", "jpeg"],
                   help="how images are stored (default original: a source's own image "
                   "bytes where no resize is needed, else lossless png)")
    b.add_argument("--segmenter", help="segmentation model labelling an images:PATH source")
    b.add_argument("--workers", type=int, default=0, help="processes (default: CPU cores)")
    b.add_argument("--strict", action="store_true",
                   help="stop at the first bad image or mask instead of skipping it")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.set_defaults(run=run_build)

    i = sub.add_parser("info", help="counts per category and the most frequent concepts")
    i.add_argument("path", metavar="DIR")
    i.add_argument("--top", type=int, default=10, help="concepts listed per category")
    i.set_defaults(run=run_info)

    s = sub.add_parser("show", help="write one image beside its masks, with a legend")
    s.add_argument("path", metavar="DIR")
    s.add_argument("--index", type=int, default=0, help="row to show (default 0)")
    s.add_argument("--out", required=True, metavar="FILE.png")
    s.set_defaults(run=run_show)

    e = sub.add_parser("export", help="write a concept dataset in another format")
    e.add_argument("path", metavar="DIR")
    e.add_argument("--format", choices=["broden"], default="broden")
    e.add_argument("--out", required=True, metavar="PATH")
    e.set_defaults(run=run_export)


def run_build(args: argparse.Namespace) -> int:
    """Build the dataset and print where it is and what was skipped."""
    from ..datasets import build_dataset, default_build_options, open_sources
    from ..paths import output_folder

    if args.out:
        output_folder(args.out, dataset=True)
    options = {"segmenter": args.segmenter} if args.segmenter else {}
    sources = open_sources(args.sources, **options)
    opts = default_build_options(sources, image_size=args.image_size,
                                 mask_size=args.mask_size, min_frequency=args.min_frequency,
                                 val_fraction=args.val_fraction,
                                 image_format=args.image_format, strict=args.strict,
                                 workers=args.workers)
    result = build_dataset(sources, args.out, opts, force=args.force,
                           progress=sys.stderr.isatty())
    how = "cached" if result.cached else f"built in {result.seconds:.1f}s"
    print(f"{result.path}  ({result.images} images, {how})")
    if result.skipped:
        print(f"skipped {len(result.skipped)} bad sample(s):")
        for item in result.skipped[:20]:
            print(f"  {item['source']}[{item['index']}]: {item['reason']}")
        if len(result.skipped) > 20:
            print(f"  ... and {len(result.skipped) - 20} more (listed in probe.json)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the dataset summary."""
    from ..datasets.browse import summarize
    from ..datasets.probe import ProbeSet

    print(summarize(ProbeSet(args.path), top=args.top))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Write the image of one row beside its masks."""
    from ..datasets.browse import save_sample
    from ..datasets.probe import ProbeSet

    print(save_sample(ProbeSet(args.path), args.index, args.out))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export the dataset (Broden layout)."""
    from ..datasets.export import export_broden
    from ..datasets.probe import ProbeSet
    from ..paths import output_folder

    output_folder(args.out)
    print(export_broden(ProbeSet(args.path), args.out))
    return 0
