"""``unitdissect archive``: one .tar.gz of a workspace's config, runs and site, with hashes."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``archive`` command."""
    p = subparsers.add_parser(
        "archive", help="pack a workspace's config, runs/ and site/ into one .tar.gz",
        description="Write one .tar.gz with the workspace's unitdissect.toml (if any), the "
        "files it names that are not results (model .py files, weights, checkpoints, class "
        "lists, a local segmenter folder), runs/ (with runs/build-manifest.json) and the site, "
        "plus archive-manifest.json listing the SHA-256 of every file. Checkpoints, dataset "
        "folders and the dataset cache (data/) are left out: they are large and the config "
        "rebuilds them. Check an archive with `unitdissect verify`.")
    p.add_argument("--workspace", default=".", metavar="DIR",
                   help="the workspace folder (default: the current folder)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="the archive to write (default: "
                        "WORKSPACE/unitdissect-archive-YYYYMMDD-HHMMSS.tar.gz, UTC)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the archive and say where it is."""
    from ..workspace.archive import create_archive

    info = create_archive(args.workspace, args.out)
    print(f"wrote {info.path} ({info.files} files, {info.bytes / 1e6:.1f} MB before "
          f"compression, {info.path.stat().st_size / 1e6:.1f} MB archived)")
    return 0
