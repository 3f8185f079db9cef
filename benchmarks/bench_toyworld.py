"""Measure how fast the toy world generates samples (images plus label maps).

Usage: python benchmarks/bench_toyworld.py [--n 2000] [--size 128] [--workers 2]
Prints per-process and multi-process rates, the projected time for 10,000 samples and one
markdown table row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import numpy as np

from builder.datasets.sources.toyworld import ToyWorld

_WORLD: ToyWorld | None = None


def _init(size: int, seed: int) -> None:
    global _WORLD
    _WORLD = ToyWorld(n=10**9, size=size, seed=seed)


def _make(index: int):
    # return the whole sample, as a dataset builder's worker would, so pickling is counted too
    assert _WORLD is not None
    return _WORLD.sample(index)


def single(n: int, size: int, seed: int) -> tuple[float, float]:
    """Samples per second in this process: by the wall clock, and by CPU time (robust to load)."""
    _init(size, seed)
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        _make(i)
    return n / (time.perf_counter() - t), n / (time.process_time() - cpu)


def parallel(n: int, size: int, seed: int, workers: int) -> float:
    """Samples per second with ``workers`` processes, results returned to the parent."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init, initargs=(size, seed)) as pool:
        pool.map(_make, range(workers * 4))  # warm the workers up (imports, caches)
        t = time.perf_counter()
        for s in pool.imap_unordered(_make, range(n), chunksize=32):
            assert s.image.shape == (size, size, 3)
        return n / (time.perf_counter() - t)


def per_scene(n: int, size: int, seed: int) -> dict[str, float]:
    """Mean milliseconds per sample for each scene class (and textures)."""
    _init(size, seed)
    assert _WORLD is not None
    times: dict[str, list[float]] = {}
    for i in range(n):
        name = _WORLD.scene_of(i) or "texture"
        t = time.perf_counter()
        _make(i)
        times.setdefault(name, []).append(time.perf_counter() - t)
    return {k: 1000 * float(np.mean(v)) for k, v in sorted(times.items())}


def main() -> None:
    """Run the benchmark and print the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per measurement")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    one, one_cpu = single(args.n, args.size, args.seed)
    many = parallel(args.n, args.size, args.seed, args.workers)
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, load {load:.1f}, python {platform.python_version()}")
    print(f"1 process:   {one:7.1f} samples/s ({1000 / one:.2f} ms each; {1000 / one_cpu:.2f} ms of CPU each)")
    print(f"{args.workers} processes: {many:7.1f} samples/s -> 10,000 samples in {10000 / many:.1f} s "
          f"(CPU time alone would allow {10000 / (one_cpu * args.workers):.1f} s)")
    for k, v in per_scene(min(args.n, 1100), args.size, args.seed).items():
        print(f"  {k:14s} {v:6.2f} ms")
    print()
    print("| source | size | 1 process | "
          f"{args.workers} processes | 10,000 samples |")
    print("|---|---|---|---|---|")
    print(f"| toyworld v{ToyWorld(size=args.size).fingerprint().split(':')[1][1:]} | {args.size} px | {one:.0f} /s | "
          f"{many:.0f} /s | {10000 / many:.0f} s |")


if __name__ == "__main__":
    main()
