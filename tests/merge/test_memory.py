"""Peak memory of a merge stays near a few row blocks, far below K whole models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

MB = 1 << 20


def _write_model(path, seed, base=None):
    """~100 MB of fp32 in 4 tensors of 24 MB (each larger than a merge block) + small ones."""
    path.mkdir()
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in range(4):
        t = torch.randn(3000, 2048, generator=g)
        tensors[f"layers.{i}.weight"] = t if base is None else base[f"layers.{i}.weight"] + 0.01 * t
    tensors["norm.weight"] = torch.ones(2048)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps({"architectures": ["Toy"], "vocab_size": 10}))
    return tensors


SCRIPT = textwrap.dedent("""
    import json, sys, psutil, torch
    torch.set_num_threads(1)
    from dtmerge.merge import merge_models
    import peft.utils.merge_utils  # imports done before measuring
    from dtmerge.merge.methods import kernels
    jit_before = psutil.Process().memory_info().rss // 1024
    kernels.warm()  # the compiled kernels' fixed cost (LLVM, numba's runtime), like an import
    before = psutil.Process().memory_info().rss // 1024  # now, not the import-time peak
    root, method = sys.argv[1], sys.argv[2]
    merge_models(root + "/base", [root + f"/m{k}" for k in range(4)], root + "/out_" + method,
                 method=method, block_elements=1 << 18)
    # VmHWM: this process's own peak. (ru_maxrss would also count the pytest parent's RSS,
    # which Linux carries over through fork and exec.)
    status = open("/proc/self/status").read()
    after = int(status.split("VmHWM:")[1].split()[0])
    print(json.dumps({"growth_kb": after - before, "jit_kb": before - jit_before}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["linear", "ties"])
def test_peak_rss_is_bounded(tmp_path_factory, method):
    root = tmp_path_factory.getbasetemp() / "rss_models"
    if not root.exists():
        root.mkdir()
        base = _write_model(root / "base", 0)
        for k in range(4):
            _write_model(root / f"m{k}", k + 1, base)
        del base
    model_bytes = (root / "base" / "model.safetensors").stat().st_size
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(root), method], check=True,
                         capture_output=True, text=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    growth = measured["growth_kb"] * 1024
    print(f"{method}: the compiled kernels' fixed cost {measured['jit_kb'] / 1024:.0f} MB")
    # Loading the 4 models would cost 4 x ~100 MB; streaming costs a few dozen 1 MB blocks
    # (TIES keeps about 8 temporaries per model and block).
    print(f"{method}: peak RSS growth {growth / MB:.0f} MB for K=4 models of {model_bytes / MB:.0f} MB")
    assert growth < 0.25 * 4 * model_bytes, f"peak RSS grew {growth / MB:.0f} MB"
    assert (root / f"out_{method}" / "model.safetensors").stat().st_size >= model_bytes - 4096
