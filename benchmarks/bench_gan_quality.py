"""Benchmark: the quality of demo:generator against real toy-world scenes.

Measures (``builder.train.generator.evaluate_generator``, against real scenes of the five
classes the generator was trained on, as the training command does): the Fréchet distance between pooled
``features.conv5_3`` features of demo:classifier on generated vs real scenes, beside baselines
(a second real sample, blurred real images, uniform noise), and the per-concept pixel
frequencies demo:segmenter finds on generated vs real scenes. Also saves a grid of samples.

Usage: python benchmarks/bench_gan_quality.py [--n 1000] [--grid /tmp/gan_samples.png]
       [--json FILE] [--generator FILE.safetensors]
Prints markdown tables for docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def save_grid(images: "np.ndarray", path: Path, columns: int = 8, scale: int = 2) -> None:
    """Write uint8 N x 3 x H x W images as one PNG grid (each image scaled up ``scale`` x)."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = \
            image.transpose(1, 2, 0)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                 Image.NEAREST).save(path)


def main() -> None:
    """Evaluate the generator and print the tables."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="images per set (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--grid", default="/tmp/gan_samples.png", help="where to save 64 samples")
    p.add_argument("--json", help="also write the full report here")
    p.add_argument("--generator", help="generator weights (default: the shipped ones)")
    p.add_argument("--top", type=int, default=15, help="object concepts listed (default 15)")
    args = p.parse_args()

    from builder.models import get_demo, load_model
    from builder.train.generator import GENERATOR_SCENES, evaluate_generator, sample_images

    loaded = load_model("demo:generator", weights=args.generator)
    save_grid(sample_images(loaded.module, 64, loaded.input_shape[0], seed=args.seed).numpy(),
              Path(args.grid))
    start = time.perf_counter()
    report = evaluate_generator(loaded.module,
                                classifier_weights=get_demo("classifier").weights_path(),
                                segmenter_weights=get_demo("segmenter").weights_path(),
                                n=args.n, seed=args.seed, scenes=GENERATOR_SCENES)
    seconds = time.perf_counter() - start
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"Fréchet distance, pooled features.conv5_3 of demo:classifier, {args.n} images "
          f"each vs {args.n} real scenes ({seconds:.0f}s):\n")
    print("| set | Fréchet distance |\n|---|---|")
    for name, value in report["frechet_classifier_conv5_3"].items():
        print(f"| {name} | {value:.2f} |")
    print("\nPixel frequencies found by demo:segmenter (fraction of all pixels):\n")
    print("| category | total variation gen vs real | real vs real | classes found "
          "(generated / real) |\n|---|---|---|---|")
    for cat, row in report["segmenter_pixel_frequencies"].items():
        print(f"| {cat} | {row['total_variation']:.3f} | "
              f"{row['total_variation_real_vs_real']:.3f} | "
              f"{row['classes_found_generated']} / {row['classes_found_real']} |")
    print("\n| object | real | generated |\n|---|---|---|")
    for row in report["segmenter_pixel_frequencies"]["object"]["frequencies"][:args.top]:
        print(f"| {row['concept']} | {row['real']:.4f} | {row['generated']:.4f} |")
    print(f"\nsample grid: {args.grid}")


if __name__ == "__main__":
    main()
