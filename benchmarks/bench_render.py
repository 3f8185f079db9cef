"""Benchmark `unitdissect render`: time to write a site with 5,000 unit pages (target: < 60 s on 2 cores).

Usage: python benchmarks/bench_render.py [--layers 10] [--units 500] [--k 12] [--size 128] [--workers N]
The run directory is synthetic (tests/report_fixtures.py) and probe images come from a fake source,
so the number measures the site generator itself: page rendering, overlays and JPEG encoding.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from builder.report import render_site  # noqa: E402
from report_fixtures import fake_image_for, write_run  # noqa: E402


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the render workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Write a synthetic run, render it, print the timing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10, help="layers in the run (default 10)")
    parser.add_argument("--units", type=int, default=500, help="units per layer (default 500)")
    parser.add_argument("--k", type=int, default=12, help="top images per unit (default 12)")
    parser.add_argument("--size", type=int, default=128, help="probe image size in pixels (default 128)")
    parser.add_argument("--map", type=int, default=7, help="activation map size (default 7)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        layers = [(f"layer{i}", args.units, (args.map, args.map)) for i in range(args.layers)]
        start = time.perf_counter()
        run = write_run(Path(tmp), "bench", layers=layers, k=args.k, image_size=args.size, images=5000)
        made = time.perf_counter() - start
        before = _cpu_seconds()
        result = render_site([run], Path(tmp) / "site", image_for=fake_image_for, workers=args.workers)
        cpu = _cpu_seconds() - before
        size = sum(f.stat().st_size for f in (Path(tmp) / "site").rglob("*") if f.is_file())
    units = args.layers * args.units
    print(f"fixture: {made:.1f} s to write a run of {units} units ({args.layers} layers, k={args.k}, {args.size}px)")
    print(
        f"render: {result.seconds:.1f} s for {result.units} unit pages ({result.pages} pages, "
        f"{result.images} images, {size / 2**20:.0f} MiB) on {os.cpu_count()} cores, "
        f"{result.units / result.seconds:.0f} unit pages/s; {cpu:.1f} CPU-seconds in all processes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
