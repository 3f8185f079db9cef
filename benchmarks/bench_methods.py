"""Benchmark: how much the method's presets change the labels (docs/method.md, section 8).

    python benchmarks/bench_methods.py [--images 160] [--dataset SPEC] [--layer layer4]

Dissects one layer of a random ResNet-18 (seed 0) under each preset of ``--method``, and under
the default with one choice changed at a time, and prints a markdown table: the fraction of
units whose top concept agrees with the default's (and between the two peers' presets), and
the fraction of pixels above each unit's threshold. The default probe set is the toy world at
224 px with 112 px masks; ``--dataset broden:PATH`` measures a Broden release instead.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.datasets import build_dataset, default_build_options, open_sources  # noqa: E402
from builder.datasets import resolve_probe_set  # noqa: E402
from builder.dissect import DissectOptions, dissect  # noqa: E402
from builder.dissect.method import METHODS  # noqa: E402
from builder.models import load_model  # noqa: E402

#: The default with one choice changed, as the method's options spell it.
SINGLE_CHANGES = {
    "quantile over the raw maps": {"threshold_on": "raw"},
    "q = 0.01": {"quantile": 0.01},
    "zeros beyond the edges": {"upsampling": "bilinear-zeros"},
    "NetDissect-Lite's normalisation": {"mean": METHODS["netdissect"].mean,
                                        "std": METHODS["netdissect"].std},
    "plain union": {"union": "all"},
    "overlap union": {"union": "overlap"},
}


def labels(run: Path, layer: str) -> tuple[np.ndarray, float]:
    """Each unit's top concept, and the mean fraction of pixels above the thresholds."""
    with open(run / "layers" / layer / "units.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    coverage = [float(r["coverage"]) for r in rows if r.get("coverage")]
    return np.array([r["label"] for r in rows]), float(np.mean(coverage)) if coverage else 0.0


def main() -> None:
    """Run the presets and the single changes; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--dataset", help="a dataset spec or folder (default: the toy world)")
    parser.add_argument("--layer", default="layer4")
    args = parser.parse_args()
    model = load_model("torchvision:resnet18", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            probe = resolve_probe_set(args.dataset, progress=False)
        else:
            sources = open_sources([f"toyworld:n={args.images},size=224"])
            options = default_build_options(sources, mask_size=112)
            probe = resolve_probe_set(build_dataset(sources, None, options, progress=False).path)
        runs = {f"--method {name}": DissectOptions(method=name) for name in METHODS}
        runs.update({name: DissectOptions(**change) for name, change in SINGLE_CHANGES.items()})
        results = {}
        for name, options in runs.items():
            out = Path(tmp) / name.replace(" ", "_").replace("'", "")
            dissect(model, [args.layer], probe, out, options, progress=False)
            results[name] = labels(out, args.layer)
    default, _ = results["--method unitdissect"]
    print(f"Random ResNet-18 {args.layer}, {len(probe)} images "
          f"({args.dataset or 'toy world, 224 px, 112 px masks'}); "
          f"{platform.processor() or platform.machine()}, {date.today()}\n")
    print("| run | top concept = the default's | pixels above threshold |")
    print("|---|---:|---:|")
    for name, (top, coverage) in results.items():
        print(f"| {name} | {np.mean(top == default):.1%} | {coverage:.2%} |")
    peers = np.mean(results["--method netdissect"][0] == results["--method pnas"][0])
    print(f"\n`netdissect` vs `pnas`: {peers:.1%} of the units share their top concept.")


if __name__ == "__main__":
    main()
