"""``unitdissect serve``: browse a rendered site over http://127.0.0.1 (local only)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    p = subparsers.add_parser(
        "serve",
        help="serve a rendered site on 127.0.0.1",
        description="Serve SITE_DIR over HTTP on 127.0.0.1 only (never on other interfaces). "
        "The site also works opened straight from disk; this is for browsers or setups that "
        "prefer http://. Stop with Ctrl-C.",
    )
    p.add_argument("site_dir", nargs="?", default="site", metavar="SITE_DIR",
                   help="the rendered site (default: ./site)")
    p.add_argument("--port", type=int, default=8000, metavar="N",
                   help="port to listen on (default 8000; 0 picks a free one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C."""
    from ..report.serve import serve

    serve(args.site_dir, args.port, on_ready=lambda url: print(f"serving {args.site_dir} at {url} (Ctrl-C to stop)", flush=True))
    return 0
