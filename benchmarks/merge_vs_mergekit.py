"""dtmerge's merge engine against mergekit, side by side, on K perturbed ~270M-param models.

    nice python benchmarks/merge_vs_mergekit.py [--k 4] [--methods linear ties dare_linear]
        [--repeat 3] [--warm]

Creates (once) a random-init Gemma-3-270M-shaped base and K perturbed fp32 copies under
benchmarks/.work/, installs mergekit into its own virtualenv there (its pins clash with
dtmerge's stack, so it is never a dependency), then for each method runs both tools as fresh
processes and reports wall time, peak RSS (the child's own rusage), GB/s over the bytes read,
and how far the two outputs are apart. The raw page-cache read of the same files is the bound.
Each method's merge loop is also set against the linear merge's on the same inputs: with
`--repeat N` the dtmerge merges run N rounds, the methods interleaved, so that each round's
ratio pairs merges run a minute apart (a shared machine's load drifts: read the ratios).
A method may name its density, `ties:1` (TIES keeping every entry: its merge pass alone,
without the threshold search), and `--warm` times every merge a second time in the same
process, where the compiled kernels are already loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
MK_VENV = WORK / "mergekit-venv"
PY = sys.executable
MERGEKIT_PIN = "mergekit"  # newest release; the reference numbers came from 0.1.5


def peak_of(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS in GB, stdout).

    A fresh helper process waits for it, so the helper's RUSAGE_CHILDREN peak is this
    command's alone (Linux carries a parent's peak RSS into a forked child).
    """
    helper = ("import json,subprocess,sys,time,resource;t=time.perf_counter();"
              "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
              "w=time.perf_counter()-t;r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
              "sys.stderr.write(p.stderr[-3000:]);"
              "print(json.dumps({'wall':w,'peak_kb':r,'rc':p.returncode,'out':p.stdout[-4000:]}))")
    res = subprocess.run([PY, "-c", helper, *cmd], capture_output=True, text=True)
    info = json.loads(res.stdout.strip().splitlines()[-1])
    if info["rc"]:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{res.stderr[-3000:]}")
    return info["wall"], info["peak_kb"] / 1e6, info["out"]


# ----------------------------------------------------------------------------- children

def child_make_models(k: int) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048,
                           num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                           head_dim=256, max_position_embeddings=2048, tie_word_embeddings=True)
    model = Gemma3ForCausalLM(cfg).float()
    model.save_pretrained(WORK / "models" / "base", max_shard_size="5GB")
    del model
    base_file = WORK / "models" / "base" / "model.safetensors"
    base = load_file(str(base_file))
    for i in range(k):
        g = torch.Generator().manual_seed(100 + i)
        pert = {n: (t + 1e-3 * torch.randn(t.shape, generator=g)).contiguous()
                for n, t in base.items()}
        out = WORK / "models" / f"ft_{i}"
        out.mkdir(parents=True, exist_ok=True)
        save_file(pert, str(out / "model.safetensors"), metadata={"format": "pt"})
        for f in ("config.json", "generation_config.json"):
            (out / f).write_bytes((WORK / "models" / "base" / f).read_bytes())
        del pert


def method_spec(spec: str) -> tuple[str, dict]:
    """"ties" -> ("ties", {"density": 0.5}); "ties:1" -> TIES at density 1 (every entry kept:
    its merge pass without the threshold search, the floor of any exact TIES merge)."""
    method, _, density = spec.partition(":")
    if method == "linear":
        return method, {}
    return method, {"density": float(density or 0.5)}


def child_dtmerge(spec: str, out: str, k: int, warm: bool = False) -> None:
    t0 = time.perf_counter()
    from dtmerge.merge import merge_models

    t1 = time.perf_counter()
    spec, _, scales = spec.partition("@")  # "ties@1,1.5,2": one pass, several scales
    method, params = method_spec(spec)
    base = str(WORK / "models" / "base")
    models = [str(WORK / "models" / f"ft_{i}") for i in range(k)]
    if scales:
        from dtmerge.merge import MergeOptions, merge_scaled

        outs = {Path(f"{out}_x{s}"): float(s) for s in scales.split(",")}
        merge_scaled(base, models, outs, MergeOptions(method=method, params=params))
    else:
        merge_models(base, models, out, method=method, params=params)
    t2 = time.perf_counter()
    from dtmerge.merge.methods import kernels  # compiled loops in use? (the `fast` extra)

    result = {"import_s": t1 - t0, "merge_s": t2 - t1,
              "kernels": kernels.numba.__version__ if kernels.available() else None}
    if warm and not scales:  # the same merge again in this process: kernels loaded, buffers
        shutil.rmtree(out)   # and libraries warm (what every merge after a process's first costs)
        t3 = time.perf_counter()
        merge_models(base, models, out, method=method, params=params)
        result["warm_merge_s"] = time.perf_counter() - t3
    print(json.dumps(result))


def child_page_cache(k: int) -> None:
    """The bound: every input file read once from the page cache, single-threaded.

    Read into a 1 MB buffer (the engine's block size), which stays in the CPU cache, so the
    copy costs what the kernel's copy costs. Until 2026-12-01 this read used a 64 MB buffer:
    every copy then went out to memory and the "bound" took 4-6x longer here (2.0-2.4 s
    against 0.47 s for these 5.36 GB), which flattered every loop / read ratio recorded
    before that day. That read is still printed (`read_64mb_s`) to relate old numbers to new.
    """
    files = [WORK / "models" / "base" / "model.safetensors"] + [
        WORK / "models" / f"ft_{i}" / "model.safetensors" for i in range(k)]

    def read_all(buffer_bytes: int) -> tuple[float, int]:
        view = memoryview(bytearray(buffer_bytes))
        t, total = time.perf_counter(), 0
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while n := fh.readinto(view):
                    total += n
        return time.perf_counter() - t, total

    read_all(1 << 20)  # warms the page cache
    fast = [read_all(1 << 20) for _ in range(3)]
    slow = [read_all(64 << 20) for _ in range(2)]
    print(json.dumps({"read_s": min(t for t, _ in fast), "bytes": fast[0][1],
                      "read_64mb_s": min(t for t, _ in slow)}))


# ----------------------------------------------------------------------------- parent

def ensure_mergekit() -> str | None:
    """Path of mergekit-yaml in its own venv, installing it if needed; None if impossible."""
    exe = MK_VENV / "bin" / "mergekit-yaml"
    if exe.exists():
        return str(exe)
    print("installing mergekit into", MK_VENV, "(its own venv; torch pinned to the local CPU wheel)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MK_VENV)], check=True)
        subprocess.run([str(MK_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0",
                        MERGEKIT_PIN], check=True)
    except subprocess.CalledProcessError as err:
        print(f"mergekit could not be installed ({err}); measuring dtmerge and the page cache only")
        return None
    return str(exe) if exe.exists() else None


def mergekit_config(method: str, k: int) -> str:
    models = [WORK / "models" / f"ft_{i}" for i in range(k)]
    lines = [f"merge_method: {method}", "dtype: float32", "parameters:", "  normalize: true"]
    if method != "linear":
        lines.append(f"base_model: {WORK / 'models' / 'base'}")
    lines.append("models:")
    for m in models:
        extra = ", density: 0.5" if method != "linear" else ""
        lines += [f"  - model: {m}", f"    parameters: {{weight: 1.0{extra}}}"]
    return "\n".join(lines) + "\n"


def max_diff(a: Path, b: Path) -> float:
    code = ("import sys,torch;from safetensors.torch import load_file;from pathlib import Path;"
            "ld=lambda d:{k:v for f in sorted(Path(d).glob('*.safetensors')) "
            "for k,v in load_file(str(f)).items()};"
            "x,y=ld(sys.argv[1]),ld(sys.argv[2]);"
            "print(max((x[n].float()-y[n].float()).abs().max().item() for n in x if n in y)"
            " if set(x)<=set(y) or set(y)<=set(x) else float('nan'))")
    res = subprocess.run([PY, "-c", code, str(a), str(b)], capture_output=True, text=True)
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--methods", nargs="+", default=["linear", "ties", "dare_linear"])
    ap.add_argument("--skip-mergekit", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of dtmerge merges, methods "
                    "interleaved; the table shows each method's fastest loop")
    ap.add_argument("--scales", help="also time one merge_scaled pass writing these update "
                    "scales (e.g. 1,1.5,2), against the single merge times as many")
    ap.add_argument("--warm", action="store_true", help="also time each dtmerge merge a second "
                    "time in the same process (the compiled kernels' load is paid once per "
                    "process) and print those ratios too")
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        {"make": lambda: child_make_models(args.k),
         "dtmerge": lambda: child_dtmerge(rest[0], rest[1], args.k, args.warm),
         "read": lambda: child_page_cache(args.k)}[kind]()
        return 0

    me = [PY, str(Path(__file__).resolve()), "--k", str(args.k),
          *(["--warm"] if args.warm else []), "--child"]
    if not (WORK / "models" / f"ft_{args.k - 1}" / "model.safetensors").exists():
        print("creating the base and", args.k, "perturbed copies under", WORK / "models")
        subprocess.run(me + ["make"], check=True)
    mergekit = None if args.skip_mergekit else ensure_mergekit()
    # The machine may be shared: the load average says how far to trust absolute times.
    print("load average (1, 5, 15 min) at start: %.2f %.2f %.2f" % os.getloadavg())
    read = json.loads(peak_of(me + ["read"])[2].strip().splitlines()[-1])
    gb = read["bytes"] / 1e9
    print(f"\ninputs: {args.k + 1} files, {gb:.2f} GB; page-cache read {read['read_s']:.2f} s "
          f"({gb / read['read_s']:.1f} GB/s; through a 64 MB buffer, the bound used before "
          f"2026-12-01: {read['read_64mb_s']:.2f} s)\n")
    rows = []
    loops, warm_loops = {m: [] for m in args.methods}, {}  # each method's merge loops, by round

    def record(method: str, inner: dict) -> None:
        loops[method].append(inner["merge_s"])
        if "warm_merge_s" in inner:
            warm_loops.setdefault(method, []).append(inner["warm_merge_s"])

    for method in args.methods:
        # This box's page-cache read speed drifts between runs:
        # each merge is compared with a read measured right before it.
        paired_read = json.loads(peak_of(me + ["read"])[2].strip().splitlines()[-1])
        paired = paired_read["read_s"]
        out_d = WORK / "out" / f"dtmerge_{method}"
        # The last run's outputs go first, untimed: freeing a 1 GB file's page cache took
        # ~1 s here, and it is no part of merging.
        shutil.rmtree(out_d, ignore_errors=True)
        shutil.rmtree(WORK / "out" / f"mergekit_{method}", ignore_errors=True)
        wall, peak, out = peak_of(me + ["dtmerge", method, str(out_d)])
        inner = json.loads(out.strip().splitlines()[-1])
        record(method, inner)
        row = {"method": method, "dtmerge_wall": wall, "dtmerge_loop": inner["merge_s"],
               "dtmerge_peak": peak, "read_s": paired,
               "read_64mb_s": paired_read["read_64mb_s"], "numba": inner["kernels"]}
        if "warm_merge_s" in inner:
            row["dtmerge_warm_loop"] = inner["warm_merge_s"]
        if mergekit and ":" not in method:
            cfg = WORK / f"mergekit_{method}.yml"
            cfg.write_text(mergekit_config(method, args.k))
            out_m = WORK / "out" / f"mergekit_{method}"
            wall_m, peak_m, _ = peak_of([mergekit, str(cfg), str(out_m), "--allow-crimes"])
            row.update(mergekit_wall=wall_m, mergekit_peak=peak_m,
                       max_abs_diff=max_diff(out_d, out_m))
        rows.append(row)
        print(json.dumps(row))
        if args.scales:
            for scale in args.scales.split(","):
                shutil.rmtree(f"{out_d}_x{scale}", ignore_errors=True)
            _, _, out_s = peak_of(me + ["dtmerge", f"{method}@{args.scales}", str(out_d)])
            row["scaled_loop"] = json.loads(out_s.strip().splitlines()[-1])["merge_s"]
            print(json.dumps(row))
    for round_no in range(1, args.repeat):
        for method in args.methods:
            out_d = WORK / "out" / f"dtmerge_{method}"
            shutil.rmtree(out_d, ignore_errors=True)
            _, _, out = peak_of(me + ["dtmerge", method, str(out_d)])
            record(method, json.loads(out.strip().splitlines()[-1]))
        print(f"round {round_no + 1}:", json.dumps({m: round(v[-1], 2) for m, v in loops.items()}),
              *(["warm:", json.dumps({m: round(v[-1], 2) for m, v in warm_loops.items()})]
                if warm_loops else []))
    for r in rows:
        r["dtmerge_loop"] = min(loops[r["method"]])
    print("\n| method | tool | wall s | merge loop s | peak RSS GB | GB/s (wall) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | dtmerge | {r['dtmerge_wall']:.1f} | {r['dtmerge_loop']:.1f} | "
              f"{r['dtmerge_peak']:.2f} | {gb / r['dtmerge_wall']:.2f} |")
        if "mergekit_wall" in r:
            print(f"| {r['method']} | mergekit | {r['mergekit_wall']:.1f} | - | "
                  f"{r['mergekit_peak']:.2f} | {gb / r['mergekit_wall']:.2f} |")
    print()
    for r in rows:
        if "mergekit_wall" in r:
            print(f"{r['method']}: dtmerge {r['mergekit_wall'] / r['dtmerge_wall']:.1f}x faster end "
                  f"to end, {r['mergekit_peak'] / r['dtmerge_peak']:.1f}x less peak RSS; merge loop "
                  f"{r['dtmerge_loop'] / r['read_s']:.1f}x the page-cache read; "
                  f"max |dtmerge - mergekit| = {r['max_abs_diff']:.3g}")
    for r in rows:
        line = (f"{r['method']}: merge loop {r['dtmerge_loop']:.2f} s / page-cache read right "
                f"before it {r['read_s']:.2f} s = {r['dtmerge_loop'] / r['read_s']:.1f}x "
                f"(against the 64 MB-buffer read of earlier records, {r['read_64mb_s']:.2f} s: "
                f"{r['dtmerge_loop'] / r['read_64mb_s']:.1f}x)")
        if "scaled_loop" in r:
            n = len(args.scales.split(","))
            line += (f"; {n} scales in one pass {r['scaled_loop']:.1f} s against {n} single "
                     f"merges {n * r['dtmerge_loop']:.1f} s ({n * r['dtmerge_loop'] / r['scaled_loop']:.1f}x)")
        print(line)
    for label, table in (("merge loop", loops), ("warm merge loop (same process, again)",
                                                  warm_loops)):
        if "linear" not in table:
            continue
        for method, times in table.items():
            if method == "linear":
                continue
            paired = [t / lin for t, lin in zip(times, table["linear"])]
            print(f"{method} / linear {label}: {min(times) / min(table['linear']):.2f}x "
                  f"fastest against fastest, {statistics.median(paired):.2f}x median of "
                  f"{len(paired)} rounds ({' '.join(f'{x:.2f}' for x in paired)}); goal 1.5x")
    print("load average (1, 5, 15 min) at end: %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
