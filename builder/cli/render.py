"""``unitdissect render``: turn run directories into a static website that works offline."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``render`` command."""
    p = subparsers.add_parser(
        "render",
        help="write the report website of one or more run directories",
        description="Read run directories (written by `unitdissect dissect`, `ablate`, `gan`) and "
        "write a static website: an overview, one page per layer, unit, concept and class, and a "
        "site-wide search. Open SITE_DIR/index.html in a browser (no server or network needed). "
        "SITE_DIR is emptied but kept; a folder with files unitdissect did not write is refused.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run directory (several: one site)")
    p.add_argument("--out", default="site", metavar="SITE_DIR", help="the site folder (default: ./site)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that draw unit pages (default: one per CPU core)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render the site with a progress bar and print where it is."""
    import sys

    from tqdm import tqdm

    from ..report import render_site

    with tqdm(total=0, unit="page", desc="render", disable=not sys.stderr.isatty(), leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = render_site(args.run_dirs, args.out, workers=args.workers, progress=progress)
    print(
        f"wrote {result.pages} pages ({result.units} units, {result.images} images) "
        f"in {result.seconds:.1f} s; open {result.index}"
    )
    return 0
