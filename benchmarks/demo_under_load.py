"""`dtm demo --size small` (cached base) quiet vs beside one CPU-bound process, side by side.

    python benchmarks/demo_under_load.py [--size small] [--runs-dir DIR]

First builds (or reuses) the demo's cached testbed, untimed. Then runs the demo twice in fresh
run directories: once as it is, once while this script keeps one busy-loop process running
(as a laptop's other work would). Prints wall and CPU seconds of both and the slow-down ratio
(goal: under load <= 2.5x the quiet time). The machine's load average before and after is
printed too: other users' jobs confound both runs alike, not only the loaded one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def demo(size: str, runs_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds (children included) of one `dtm demo` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
               HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dtmerge.cli.main", "demo", "--size", size,
                    "--runs-dir", str(runs_dir)], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small")
    ap.add_argument("--runs-dir", default=None)
    args = ap.parse_args()
    sys.path.insert(0, SRC)
    from dtmerge.demo.testbed.build import build_testbed

    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    build_testbed(0, args.size, log=lambda m: None)  # the cached base: built once, untimed
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="demo-under-load-"))
    try:
        quiet = demo(args.size, root / "quiet")
        print(f"quiet:      {quiet[0]:7.1f} s wall  {quiet[1]:7.1f} s CPU", flush=True)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            loaded = demo(args.size, root / "loaded")
        finally:
            hog.kill()
            hog.wait()
        print(f"under load: {loaded[0]:7.1f} s wall  {loaded[1]:7.1f} s CPU", flush=True)
    finally:
        if not args.runs_dir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"under load / quiet: x{loaded[0] / quiet[0]:.2f} wall (goal <= 2.5), "
          f"x{loaded[1] / quiet[1]:.2f} CPU")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
