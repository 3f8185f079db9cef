"""Benchmark: a dissection against a plain forward pass over the same probe images.

    python benchmarks/bench_dissect.py [--images 256] [--size 224] [--dataset SPEC]

Times, on ResNet-18 (random initialisation) and the toy world at 224 px (built and cached on
first use): one plain forward pass over the probe images, decoding included; the dissection
of layer4, and of layer1..layer4 at once, each with the activations of pass 1 kept in memory
for the later passes (the default), kept on disk (``--cache-memory 0``), and with a second
forward pass instead (``--cache-memory 0 --cache-disk 0``).
Prints a markdown table with the ratios dissection / forward pass.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.datasets import resolve_probe_set  # noqa: E402
from builder.dissect import DissectOptions, dissect  # noqa: E402
from builder.models import load_model  # noqa: E402


def plain_forward(model, probe, batch_size: int, device: str) -> float:
    """Seconds for one forward pass of the whole model over every probe image."""
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in probe.batches(probe.split_indices("all"), batch_size, device=device):
            model.module((batch.images - mean) / std)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timed_dissect(model, layers, probe, options: DissectOptions) -> tuple[float, dict]:
    """Seconds for a fresh dissection, and its manifest's layer stats."""
    import json

    out = Path(tempfile.mkdtemp(prefix="bench-dissect-"))
    try:
        start = time.perf_counter()
        dissect(model, layers, probe, out, options, progress=False)
        seconds = time.perf_counter() - start
        stats = json.loads((out / "manifest.json").read_text())["stats"]["layers"]
        return seconds, stats
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dataset", help="dataset spec (default: toyworld:n=IMAGES,size=SIZE)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings")
    args = parser.parse_args(argv)

    spec = args.dataset or f"toyworld:n={args.images},size={args.size}"
    probe = resolve_probe_set(spec, progress=False)
    model = load_model("torchvision:resnet18", seed=0, device=args.device)
    n = len(probe)

    def best(fn):
        return min((fn() for _ in range(args.repeats)), key=lambda r: r[0] if
                   isinstance(r, tuple) else r)

    plain_forward(model, probe, args.batch_size, args.device)  # warm-up (file cache, kernels)
    forward = best(lambda: plain_forward(model, probe, args.batch_size, args.device))
    # the compiled kernels load once per process (and compile once per install): a first
    # dissection, timed apart, so that the table compares the steady state
    warm_up = timed_dissect(model, ["layer4"], probe, DissectOptions(
        batch_size=args.batch_size, device=args.device))[0]
    rows = []
    for layers in (["layer4"], ["layer1", "layer2", "layer3", "layer4"]):
        for memory, disk, label in ((2 << 30, 0, "activations in memory"),
                                    (0, 32 << 30, "activations on disk"),
                                    (0, 0, "second forward pass")):
            options = DissectOptions(batch_size=args.batch_size, device=args.device,
                                     cache_memory=memory, cache_disk=disk)
            seconds, stats = best(lambda: timed_dissect(model, layers, probe, options))
            methods = sorted({s["quantile_method"] for s in stats.values()})
            rows.append((",".join(layers), label, seconds, seconds / forward, "/".join(methods)))

    print(f"ResNet-18 (random init), {n} images of {probe.image_size} px, masks "
          f"{probe.mask_size} px, batch {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}\n")
    print(f"dissect layer4, first in the process (the kernels loaded): {warm_up:.2f} s\n")
    print("| work | pass 2 reads | seconds | ms / image | ratio to forward | thresholds |")
    print("|---|---|---:|---:|---:|---|")
    print(f"| plain forward pass (full model, decoding included) | – | {forward:.2f} | "
          f"{1000 * forward / n:.1f} | 1.00 | – |")
    for layers, label, seconds, ratio, methods in rows:
        print(f"| dissect {layers} | {label} | {seconds:.2f} | {1000 * seconds / n:.1f} | "
              f"{ratio:.2f} | {methods} |")
    for layers in ("layer4", "layer1,layer2,layer3,layer4"):
        memory, disk, second = [r[2] for r in rows if r[0] == layers]
        choice = min((memory, "memory"), (disk, "disk"), (second, "a second forward pass"))[1]
        print(f"\n{layers}: activations in memory {memory:.2f}s, on disk {disk:.2f}s, a second "
              f"forward pass {second:.2f}s -> {choice} is fastest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
