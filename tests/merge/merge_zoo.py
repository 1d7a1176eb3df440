"""Builders of tiny base, fine-tuned and LoRA models for the merge tests.

A module with its own name (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

torch.set_num_threads(1)


def tiny_config(**overrides):
    from transformers import LlamaConfig

    kw = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              tie_word_embeddings=False)
    kw.update(overrides)
    return LlamaConfig(**kw)


def make_base(path: Path, seed: int = 0, **config_overrides) -> Path:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(**config_overrides))
    model.save_pretrained(path)
    return path


def make_finetuned(base: Path, path: Path, seed: int, scale: float = 0.02,
                   max_shard_size: str | None = None) -> Path:
    """A 'fine-tuned' copy: the base plus seeded random perturbations of every tensor."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    return path


def make_lora(base: Path, path: Path, seed: int, r: int = 4, alpha: float = 8, **lora_kw) -> Path:
    """A PEFT LoRA adapter with random (non-zero) A and B, saved with save_pretrained."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora_kw.setdefault("target_modules", ["gate_proj", "up_proj", "down_proj", "q_proj"])
    cfg = LoraConfig(r=r, lora_alpha=alpha, init_lora_weights=False, **lora_kw)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(path)
    return path


def merged_full(base: Path, adapter: Path) -> dict[str, torch.Tensor]:
    """PEFT's own merge_and_unload of an adapter: the reference for LoRA exactness."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_dir(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory (one file or an index)."""
    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
