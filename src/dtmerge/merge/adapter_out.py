"""Writing a merge of LoRA adapters as one LoRA adapter, exactly, by concatenating ranks.

For a merge that is linear in the updates, sum_k c_k s_k B_k A_k = B_cat A_cat with
A_cat = [A_1; ...; A_K] (stacked rows) and B_cat = [c_1 s_1 B_1, ..., c_K s_K B_K] (stacked
columns). Each module's rank becomes the sum of the adapters' ranks and its alpha equals that
rank, so PEFT's scaling is 1 and the adapter reproduces the merged update exactly.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save_file

from dtmerge.errors import MergeError


def write_concat_adapter(sources: list, coefficients: list[float], out_dir: Path) -> dict:
    """Write adapter_config.json and adapter_model.safetensors into `out_dir`.

    Returns {module: rank} of the written adapter.
    """
    if any(s.kind != "lora" for s in sources):
        raise MergeError("as_adapter needs every input to be a LoRA adapter")
    fans = {m.fan_in_fan_out for s in sources for m in s.modules.values()}
    if len(fans) > 1:
        raise MergeError("as_adapter: adapters mix fan_in_fan_out settings")
    targets = sorted({t for s in sources for t in s.modules})
    tensors, ranks = {}, {}
    for target in targets:
        module = target[: -len(".weight")]
        parts = [(c, s.modules[target]) for c, s in zip(coefficients, sources) if target in s.modules]
        A = torch.cat([m.A for _, m in parts], dim=0)
        B = torch.cat([m.B * (c * m.scaling) for c, m in parts], dim=1)
        tensors[f"base_model.model.{module}.lora_A.weight"] = A.contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = B.contiguous()
        ranks[module] = A.shape[0]
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {m: rk for m, rk in ranks.items() if rk != r}
    first = sources[0].config
    config = {
        "peft_type": "LORA",
        "task_type": first.get("task_type", "CAUSAL_LM"),
        "base_model_name_or_path": first.get("base_model_name_or_path"),
        "r": r,
        "lora_alpha": r,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),  # alpha = rank: scaling 1 for every module
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": fans.pop() if fans else False,
        "use_rslora": False,
        "use_dora": False,
        # Full module names, so no module outside the inputs' targets gets an (empty) LoRA.
        "target_modules": sorted(ranks),
        "inference_mode": True,
    }
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    return ranks
