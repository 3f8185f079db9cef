"""Benchmark: the single-unit ablation sweep of a whole layer against plain forward passes.

    python benchmarks/bench_ablation.py [--images 256] [--layer features.conv5_3] [--naive-units 4]

On ``demo:classifier`` (its shipped weights when present, else a random initialisation: the
cost does not depend on the weights) and ``--images`` evaluation images of 128 px held in
memory (decoding excluded everywhere), times:

- one plain forward pass of the whole model over the evaluation images;
- the single-unit sweep of every unit of ``--layer`` (the layer's output computed once and
  kept, then only the rest of the network on the stacked, masked activations), the first pass
  included;
- the naive sweep (one full forward pass per unit, ``strategy="full"``) measured on
  ``--naive-units`` units and extrapolated to the whole layer.

Prints the costs in forward passes over the evaluation set. The target: the whole sweep costs
at most 10 forward passes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.intervene import ClassMap, LayerEvaluator, single_unit_sweep  # noqa: E402
from builder.models import demo_registry  # noqa: E402,F401 - registers demo:classifier
from builder.models import get_demo, load_model  # noqa: E402


def _model(device: str) -> tuple[torch.nn.Module, str]:
    entry = get_demo("classifier")
    path = entry.weights_path()
    if path is not None and path.is_file():
        return load_model("demo:classifier", device=device).module, "shipped weights"
    module = entry.factory().to(device).eval()
    return module, "random initialisation (no data/demo/classifier.safetensors yet)"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--layer", default="features.conv5_3")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--naive-units", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    module, weights = _model(args.device)
    names = tuple(getattr(module, "class_names", ())) or tuple(f"c{i}" for i in range(11))
    classes = ClassMap(names, tuple(range(len(names))), tuple(range(1, len(names) + 1)),
                       len(names))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, args.size, args.size, generator=g)
    labels = torch.randint(0, len(names), (args.images,), generator=g)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    b = args.batch_size

    def batches():
        return ((images[i:i + b], labels[i:i + b]) for i in range(0, args.images, b))

    with torch.inference_mode():
        module(((images[:2] - m) / s).to(args.device))  # warm-up
        start = time.perf_counter()
        for x, _ in batches():
            module(((x - m) / s).to(args.device))
        forward = time.perf_counter() - start

    start = time.perf_counter()
    evaluator = LayerEvaluator(module, args.layer, batches, classes, mean, std,
                               device=args.device, batch_size=b)
    prepared = time.perf_counter() - start
    single_unit_sweep(evaluator)
    sweep = time.perf_counter() - start
    units = evaluator.units

    naive = LayerEvaluator(module, args.layer, batches, classes, mean, std, device=args.device,
                           strategy="full", batch_size=b, cache_memory=0)
    start = time.perf_counter()
    naive.evaluate(torch.eye(units, dtype=torch.bool)[:args.naive_units])
    naive_measured = time.perf_counter() - start
    naive_total = naive_measured / args.naive_units * units

    print(f"# single-unit ablation sweep: demo:classifier {args.layer} ({units} units), "
          f"{args.images} images of {args.size} px, batch {b}")
    print(f"weights: {weights}; device {args.device}; strategy {evaluator.strategy}; "
          f"torch {torch.__version__}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    print()
    print("| what | seconds | forward passes over the evaluation set |")
    print("|---|---:|---:|")
    print(f"| one plain forward pass | {forward:.2f} | 1.00 |")
    print(f"| first pass (layer output cached, baseline) | {prepared:.2f} | "
          f"{prepared / forward:.2f} |")
    print(f"| whole single-unit sweep ({units} ablations, first pass included) | {sweep:.2f} | "
          f"{sweep / forward:.2f} |")
    print(f"| naive sweep, by definition: one full forward pass per unit | {units * forward:.1f} "
          f"| {units} |")
    print(f"| naive sweep, measured (`strategy=full` on {args.naive_units} units, extrapolated) "
          f"| {naive_total:.1f} | {naive_total / forward:.1f} |")
    print()
    ratio = sweep / forward
    print(f"sweep / forward = {ratio:.2f} (target <= 10: {'ok' if ratio <= 10 else 'MISSED'}); "
          f"speed-up over the naive sweep: {units / ratio:.0f}x ({naive_total / sweep:.0f}x "
          "measured)")
    return 0 if ratio <= 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
