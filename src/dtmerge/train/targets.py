"""LoRA target-module presets that work across architectures.

The paper adapts only the MLP projections. Names differ between model families, so a preset
is a set of leaf names matched against the model's linear layers; the first family that
matches wins. Explicit lists are passed through untouched.
"""

from __future__ import annotations

from dtmerge.errors import ConfigError

PRESETS: dict[str, list[set[str]]] = {
    # Llama / Mistral / Qwen / Gemma; GPT-2 and Falcon; GPT-NeoX; OPT / Phi; Mixtral-style experts.
    "mlp": [
        {"gate_proj", "up_proj", "down_proj"},
        {"c_fc", "c_proj"},
        {"dense_h_to_4h", "dense_4h_to_h"},
        {"fc1", "fc2"},
        {"w1", "w2", "w3"},
    ],
    "attention": [
        {"q_proj", "k_proj", "v_proj", "o_proj"},
        {"c_attn"},
        {"query_key_value"},
        {"q_proj", "k_proj", "v_proj", "out_proj"},
        {"Wqkv", "out_proj"},
    ],
}


def linear_leaf_names(model) -> set[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            leaf = name.rsplit(".", 1)[-1]
            if leaf != "lm_head":
                names.add(leaf)
    return names


def resolve_target_modules(model, spec: str | list[str]) -> str | list[str]:
    """Turn a preset name into module names present in `model` (or pass a list through)."""
    present = linear_leaf_names(model)
    if isinstance(spec, list):
        missing = [m for m in spec if m not in present]
        if missing:
            raise ConfigError(
                f"train.lora.target_modules: {missing} not found among the model's linear "
                f"layers {sorted(present)}"
            )
        return spec
    if spec in ("all-linear", "all_linear"):
        return "all-linear"
    if spec == "mlp+attention":
        return [*resolve_target_modules(model, "mlp"), *resolve_target_modules(model, "attention")]
    if spec not in PRESETS:
        raise ConfigError(
            f"train.lora.target_modules: unknown preset '{spec}'. Presets: mlp, attention, "
            "mlp+attention, all-linear; or give a list of module names"
        )
    for family in PRESETS[spec]:
        found = sorted(family & present)
        # A family matches when its distinctive names are there (c_proj alone is ambiguous).
        if found and (len(found) == len(family) or len(found) >= 2):
            return found
    raise ConfigError(
        f"train.lora.target_modules: preset '{spec}' matches none of the model's linear layers "
        f"{sorted(present)}; give the module names as a list"
    )
