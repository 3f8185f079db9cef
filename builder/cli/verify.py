"""``unitdissect verify``: check an archive's hashes, and optionally rebuild and compare it."""

from __future__ import annotations

import argparse

EXIT_DIFFERENT = 1  # as diff and sha256sum -c: 1 = differences found, 2 = could not check


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verify`` command."""
    p = subparsers.add_parser(
        "verify", help="check every file of an archive against its SHA-256 manifest",
        description="Check every file of an archive written by `unitdissect archive` against "
        "its manifest and name each file that differs, is missing or is extra. Members with "
        "absolute paths, '..', or links pointing outside refuse the archive. With --rerun, "
        "rebuild the archived config in a temporary workspace and compare the result files "
        "(units.csv, iou.npy, ablation CSV/NPY) within rtol 1e-5, atol 1e-6. Exit status: 0 "
        "all good, 1 differences found, 2 the archive is missing, corrupt or unsafe.")
    p.add_argument("archive", metavar="FILE", help="the .tar.gz archive")
    p.add_argument("--rerun", action="store_true",
                   help="rebuild from the archived config in a temporary folder and compare "
                        "the results (slow: the whole pipeline runs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify, print one line per problem, and return 0 or ``EXIT_DIFFERENT``."""
    import sys

    from ..workspace.archive import verify_archive

    report = verify_archive(args.archive, rerun=args.rerun,
                            log=lambda s: print(s, file=sys.stderr))
    for line in report.problems():
        print(line)
    checked = f"{report.files} files"
    if report.rerun is not None:
        checked += f", {report.rerun_files} result files rebuilt"
    if report.ok:
        print(f"ok  {args.archive}: {checked} match")
        return 0
    print(f"{args.archive}: {len(report.problems())} problems ({checked})")
    return EXIT_DIFFERENT
