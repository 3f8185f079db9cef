"""Benchmark: the generator ablation sweep, in edited samples per second.

    python benchmarks/bench_gan.py [--samples 64] [--layer layer4] [--counts 5,10,20]
                                   [--weights FILE] [--threads 1]

On ``demo:generator`` (``--weights``, else the shipped weights when present, else a random
initialisation: the cost does not depend on the weights) and ``demo:segmenter``, generates and
segments ``--samples`` samples (into a temporary cache), then times the ablation sweep of one
concept for every N in ``--counts`` (units 0..N-1 removed: the ranking does not change the
cost), with:

- ``split``: the layer's output computed once per batch, only the rest of the generator run
  on the stacked edited copies (the default strategy);
- ``graft``: the whole generator run again for every edited copy (the naive cost);

and, to show where the time goes, the rest of the generator alone and the segmenter alone on
the same number of images. Prints one table; every figure counts edited images (one sample
under one ablation), each generated and segmented once.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.generator import Labeller, LayerSplit, SampleProbe, ablation_sweep  # noqa: E402
from builder.generator import load_generator  # noqa: E402
from builder.intervene.ablation import apply_unit_masks, unit_mask  # noqa: E402
from builder.models import demo_registry  # noqa: E402,F401 - registers demo:generator
from builder.models import get_demo  # noqa: E402
from builder.segmenters import segmenter_from_spec  # noqa: E402


def _generator(weights: str | None):
    if weights is None:
        path = get_demo("generator").weights_path()
        if path is not None and path.is_file():
            return load_generator("demo:generator"), "shipped weights"
        torch.manual_seed(0)
        return load_generator(demo_registry.make_generator()), "random initialisation"
    return load_generator("demo:generator", weights), f"weights {weights}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--counts", default="5,10,20")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images-per-pass", type=int, default=128)
    parser.add_argument("--weights")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.counts.split(",")]

    generator, weights = _generator(args.weights)
    segmenter = segmenter_from_spec("demo:segmenter")
    with tempfile.TemporaryDirectory() as cache:
        labeller = Labeller(segmenter, 64)
        started = time.perf_counter()
        probe = SampleProbe(generator, labeller, args.samples, cache, args.batch_size,
                            progress=False)
        first = time.perf_counter() - started
        concept = max(probe.concepts, key=lambda c: c.frequency).id
        ranked = {concept: np.arange(max(counts))}
        samples = np.arange(args.samples)
        rows = []
        for strategy in ("split", "graft"):
            split = LayerSplit(generator, args.layer, strategy)
            result = ablation_sweep(split, probe, labeller, ranked, counts, samples,
                                    args.batch_size, args.images_per_pass)
            rows.append((f"ablation sweep, {strategy}", result.images, result.seconds))
        split = LayerSplit(generator, args.layer, "split")
        z = probe.latents(samples[:args.batch_size])
        acts = split.head(z)
        masks = torch.stack([unit_mask(range(n), acts.shape[1]) for n in counts])
        edited = apply_unit_masks(acts, masks)
        zs = z.repeat(len(counts), 1)
        started = time.perf_counter()
        images = generator.to_uint8(split.tail(edited, zs))
        rows.append(("rest of the generator alone", len(images), time.perf_counter() - started))
        started = time.perf_counter()
        labeller(images)
        rows.append(("segmenter alone", len(images), time.perf_counter() - started))
        whole = time.perf_counter()
        generator.generate(zs)
        rows.append(("whole generator alone", len(zs), time.perf_counter() - whole))

    print(f"demo:generator ({weights}), layer {args.layer}, {args.samples} samples, N in "
          f"{counts}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}")
    print(f"generate + segment {args.samples} probe samples: {args.samples / first:.1f} "
          "samples/s")
    print(f"{'what':34s} {'images':>7s} {'seconds':>8s} {'images/s':>9s}")
    for name, n, seconds in rows:
        print(f"{name:34s} {n:7d} {seconds:8.2f} {n / seconds:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
