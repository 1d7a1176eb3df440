"""DARE's per-block operator: dtmerge's DareLinear.combine against PEFT's `dare_linear`.

    OMP_NUM_THREADS=1 python benchmarks/dare_operator.py [--k 4] [--values 4194304] [--reps 5]

Both drop task-vector entries at random with probability 1 - density, rescale by 1/density
and sum the models weighted, on the same (K, values) fp32 stack, single-threaded as in the
merge loop; best and median of interleaved repetitions. This isolates the method's own cost
from reading and writing the models (benchmarks/merge_vs_mergekit.py measures the whole
merge), and the operator dtmerge had before issue 11. The random masks differ (each tool its own generator), the work does not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--values", type=int, default=1 << 22, help="values per model (a DARE block)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--density", type=float, default=0.5)
    args = ap.parse_args()
    from peft.utils.merge_utils import dare_linear

    from dtmerge.merge.methods.base import Block
    from dtmerge.merge.methods.sparse import DareLinear

    torch.set_num_threads(1)
    x = torch.randn(args.k, args.values)
    weights = torch.full((args.k,), 1.0 / args.k)
    params = {"density": args.density, "scaling": 1.0, "normalize": True, "seed": 0}
    times: dict[str, list[float]] = {"peft dare_linear": [], "dtmerge DareLinear": [],
                                     "dtmerge before #11": []}
    for _ in range(args.reps):
        stack = x.clone()  # the operator before issue 11: torch rand, compare, multiply, sum
        t = time.perf_counter()
        gen, uniform = torch.Generator(), torch.empty(args.values)
        for k in range(args.k):
            gen.manual_seed(k)
            torch.rand(uniform.shape, generator=gen, out=uniform)
            stack[k].mul_(uniform < args.density)
        stack.mul_((weights / args.density).view(-1, 1)).sum(0)
        times["dtmerge before #11"].append(time.perf_counter() - t)
        stack = list(x.clone())
        t = time.perf_counter()
        dare_linear(stack, weights, args.density)
        times["peft dare_linear"].append(time.perf_counter() - t)
        block = Block("w", (0, 1), None, x.clone(), [1.0] * args.k, params)
        t = time.perf_counter()
        DareLinear().combine(block)
        times["dtmerge DareLinear"].append(time.perf_counter() - t)
    n = args.k * args.values
    for name, v in times.items():
        print(f"{name:20s} best {min(v):.3f} s, median {statistics.median(v):.3f} s "
              f"({min(v) / n * 1e9:.2f} ns per value)")
    ratio = min(times["peft dare_linear"]) / min(times["dtmerge DareLinear"])
    print(f"dtmerge {ratio:.1f}x faster than PEFT's operator (best of {args.reps}, "
          f"K={args.k}, {args.values} values per model); "
          f"{min(times['dtmerge before #11']) / min(times['dtmerge DareLinear']):.1f}x faster "
          "than its own operator before issue 11")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
