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
        "absolute paths, '..', links pointing outside, devices, sparse files or control "
        "characters in their names refuse the archive, and so do too many members or unpacked "
        "bytes. With --rerun, rebuild the archived config in a temporary workspace, every path "
        "confined to it, and compare the result files (units.csv, iou.npy, ablation CSV/NPY) "
        "within rtol 1e-5, atol 1e-6. Exit status: 0 all good, 1 differences found, 2 the "
        "archive is missing, corrupt or unsafe, or its config is refused.")
    p.add_argument("archive", metavar="FILE", help="the .tar.gz archive")
    p.add_argument("--rerun", action="store_true",
                   help="rebuild from the archived config in a temporary folder and compare "
                        "the results (slow: the whole pipeline runs); a config path that is "
                        "absolute or leaves the archive is refused")
    p.add_argument("--trust", action="store_true",
                   help="with --rerun: let model specs that import Python (FILE.py:CALLABLE, "
                        "MODULE:CALLABLE) run; without it they are refused. Only for archives "
                        "whose code you have read")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify, print one line per problem, and return 0 or ``EXIT_DIFFERENT``."""
    import sys

    from ..errors import ConfigError
    from ..workspace.archive import verify_archive

    if args.trust and not args.rerun:
        raise ConfigError("--trust applies to --rerun only (nothing runs without it)")
    report = verify_archive(args.archive, rerun=args.rerun,
                            log=lambda s: print(s, file=sys.stderr), trust=args.trust)
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
