"""Benchmark: peak memory of building a dataset from a folder holding one huge PNG.

    python benchmarks/bench_big_image.py [--side 10000] [--cap-gb 4] [--repo PATH]

Writes one ``--side`` x ``--side`` RGB PNG (a flat image with a few stripes: it compresses to a
few hundred KB, as a hostile or careless input would), then runs, each in a fresh process,
``unitdissect dataset build images:DIR --segmenter demo:segmenter --workers 1``: on a folder
of one 1000 x 1000 image (the baseline: Python, torch, the segmenter), then twice on the huge
one, with the default pixel limit (the image is refused from its header) and with ``?max_pixels=`` above
the image's size (it is decoded, reduced to the dataset's side, and segmented). Prints each
run's peak resident memory (``VmHWM``) and exit status. A watchdog stops a run whose
memory passes ``--cap-gb`` (the code before issue 23 needed about 19 GB) and reports it as
above the cap. ``--repo`` runs another checkout (e.g. a worktree of an older commit).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# the child: build, then print its own peak memory. VmHWM, not ru_maxrss: Linux carries
# ru_maxrss over from the parent across fork + exec, so it would count this script's own memory
CHILD = """
import re, sys
from pathlib import Path
from builder.cli import main
try:
    code = main(sys.argv[1:])
finally:
    hwm = re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)
    print("MAXRSS_KIB", hwm, flush=True)
sys.exit(code)
"""


def write_image(folder: Path, side: int) -> Path:
    """One ``side`` x ``side`` RGB PNG that compresses well."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[:, ::97] = (200, 40, 40)  # some structure, still a few hundred KB compressed
    path = folder / "huge.png"
    Image.fromarray(pixels).save(path, compress_level=9)
    return path


def _rss_kib(pid: int) -> int:
    """Current resident memory of ``pid`` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_build(spec: str, out: Path, repo: Path, cap_kib: int) -> dict:
    """One build in a fresh process, stopped if it passes ``cap_kib``; its peak and status."""
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONWARNINGS": "default"}
    argv = [sys.executable, "-c", CHILD, "dataset", "build", spec, "--segmenter",
            "demo:segmenter", "--workers", "1", "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=out.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, capped = [0], [False]

    def watch() -> None:
        while proc.poll() is None:
            seen[0] = max(seen[0], _rss_kib(proc.pid))
            if seen[0] > cap_kib:
                capped[0] = True
                proc.kill()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    watcher.join()
    peak = max([seen[0]] + [int(line.split()[1]) for line in output.splitlines()
                            if line.startswith("MAXRSS_KIB")])
    tail = [line for line in output.splitlines() if line.strip()
            and not line.startswith("MAXRSS_KIB")][-3:]
    return {"peak_gb": peak / 2**20, "capped": capped[0], "rc": proc.returncode,
            "seconds": time.perf_counter() - started, "tail": tail}


def main() -> None:
    """Write the image, run both builds, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10_000)
    parser.add_argument("--cap-gb", type=float, default=4.0)
    parser.add_argument("--repo", type=Path, default=ROOT)
    args = parser.parse_args()
    cap = int(args.cap_gb * 2**20)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        path = write_image(folder, args.side)
        print(f"# {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, {datetime.date.today()}; {args.repo}")
        print(f"image: {args.side}x{args.side} PNG, {path.stat().st_size / 1024:,.0f} KB")
        small = Path(tmp) / "small"
        write_image(small, 1000)
        limit = 2 * args.side * args.side
        for label, spec in (("baseline, one 1000x1000 image", f"images:{small}"),
                            ("default limit", f"images:{folder}"),
                            (f"max_pixels={limit}", f"images:{folder}?max_pixels={limit}")):
            r = run_build(spec, Path(tmp) / f"ds-{len(label)}", args.repo, cap)
            peak = (f"> {args.cap_gb:.1f} GB (stopped at the cap)" if r["capped"]
                    else f"{r['peak_gb']:.2f} GB")
            print(f"{label}: peak {peak}, exit {r['rc']}, {r['seconds']:.1f} s")
            for line in r["tail"]:
                print(f"    {line[:160]}")


if __name__ == "__main__":
    main()
