"""Benchmark: toy-world dataset build rate and concept-dataset read rate (images/s into tensors).

Usage: python benchmarks/bench_dataset.py [--images 10000] [--size 128] [--workers 2]
Prints markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Build a toy-world dataset, then read it back in batches at several worker counts."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    from builder.datasets import build_dataset, default_build_options, open_sources
    from builder.datasets.probe import ProbeSet

    with tempfile.TemporaryDirectory() as tmp:
        sources = open_sources([f"toyworld:n={args.images},size={args.size}"])
        options = default_build_options(sources, workers=args.workers)
        t = time.perf_counter()
        result = build_dataset(sources, Path(tmp) / "ds", options, progress=False)
        build_s = time.perf_counter() - t
        probe = ProbeSet(result.path)
        print(f"| machine | {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores |")
        print(f"| toy-world dataset build ({args.images} images, {args.size}px, masks, colors, "
              f"{args.workers} workers) | {build_s:.1f} s = {args.images / build_s:.0f} img/s |")
        idx = np.arange(len(probe))
        for workers in sorted({0, args.workers}):
            t = time.perf_counter()
            n = 0
            for batch in probe.batches(idx, batch_size=args.batch_size, num_workers=workers):
                n += len(batch.indices)
            read_s = time.perf_counter() - t
            print(f"| read into tensors (batch {args.batch_size}, {workers} workers) | "
                  f"{n / read_s:.0f} img/s |")


if __name__ == "__main__":
    main()
