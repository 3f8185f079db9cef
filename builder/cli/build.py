"""``unitdissect build``: the whole pipeline of a workspace, or the demo without a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workspace.config import WorkspaceConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` command (also what ``unitdissect`` runs with no command)."""
    p = subparsers.add_parser(
        "build", help="dataset -> dissect -> ablate -> gan -> render for a workspace (the demo "
        "by default)",
        description="Run every stage of the workspace's unitdissect.toml (the demo, when there "
        "is no config: the toy world, the demo classifier dissected and ablated, the demo "
        "generator dissected, ablated and edited), each stage cached by a fingerprint of its "
        "inputs: dataset, dissect ([[dissect]]), ablate ([[ablate]]), gan ([[gan]]: a "
        "generator over its own segmented samples), render. Writes ./data, ./runs/<name>/ and "
        "./site.")
    p.add_argument("--workspace", default=".", metavar="DIR",
                   help="the workspace folder (default: the current folder)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config offline: specs parse, layers exist, options are "
                   "valid; list what a build would download or read (nothing is fetched) and "
                   "the model specs it would import Python for (not imported, not checked)")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.add_argument("--confine", action="store_true",
                   help="for a workspace you did not write: refuse, before anything runs, a "
                        "config path that is absolute or leaves the workspace, and a model "
                        "spec that imports Python (FILE.py:CALLABLE, MODULE:CALLABLE) unless "
                        "--trust; relative paths then resolve inside the workspace only")
    p.add_argument("--trust", action="store_true",
                   help="with --confine: let model specs that import Python run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run (or validate) the build and print the per-stage summary."""
    from ..errors import ConfigError
    from ..workspace.config import load_config

    workspace = Path(args.workspace)
    if not workspace.is_dir():
        raise ConfigError(f"--workspace {workspace}: no such folder")
    if args.trust and not args.confine:
        raise ConfigError("--trust applies to --confine only (without it, everything runs)")
    if not args.confine:
        return _run(args, workspace, load_config(workspace))
    from ..workspace.confine import check_confined, check_trusted, working_directory

    workspace = workspace.resolve()  # the build runs in it
    config = load_config(workspace)
    check_confined(config, workspace, "--confine")
    check_trusted(config, args.trust, "--confine")
    # what resolves from the current folder (hf: options, hub names) resolves inside it too
    with working_directory(workspace):
        return _run(args, workspace, config)


def _run(args: argparse.Namespace, workspace: Path, config: WorkspaceConfig) -> int:
    """The dry run or the build of a loaded config."""
    from ..workspace.pipeline import build, dry_run

    if args.dry_run:
        report = dry_run(config, workspace)
        for line in report.checked:
            print(f"ok     {line}")
        for line in report.needs:
            print(f"needs  {line}")
        for line in report.notes:
            print(f"note   {line}")
        for line in report.unchecked:
            print(f"skip   {line}")
        # a dry run imports no code of the config: what only that code can tell stays open
        rest = f" (skipped {len(report.unchecked)}: not checked offline)" if report.unchecked \
            else ""
        print(f"config {config.path or '<demo>'} is valid{rest}")
        return 0
    where = config.path or "the demo config (no unitdissect.toml here)"
    print(f"unitdissect build: {where}", file=sys.stderr)
    summary = build(workspace, config, force=args.force, progress=sys.stderr.isatty(),
                    log=lambda s: print(s, file=sys.stderr))
    print(summary.table())
    print(f"open {summary.site}")
    return 0
