"""LoRA experts with a learned softmax router on the MLP layers (the paper's LoRAMoE baseline).

Hand-written: PEFT has no mixture of LoRA experts. Every MLP linear layer W of the base gets
E low-rank experts (B_e A_e) and a router; its output becomes

    W x + scale * sum_e softmax(R x)_e * B_e A_e x

with the base frozen. Only the experts and routers are saved (`lora_moe.safetensors`), with
the base model's location, so `load_lora_moe` rebuilds the model for evaluation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from dtmerge.errors import ModelError
from dtmerge.models.marker import MARKER_FILE
from dtmerge.rundir import read_state_json, rebuild_hint

CONFIG_FILE = "lora_moe_config.json"
WEIGHTS_FILE = "lora_moe.safetensors"


class LoraMoeLinear(nn.Module):
    """A frozen linear layer plus E routed LoRA experts."""

    def __init__(self, base: nn.Linear, experts: int, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        d_in, d_out = base.in_features, base.out_features
        dtype = torch.float32  # trained in fp32 even over a bf16/fp16 base (as PEFT's LoRA)
        self.router = nn.Linear(d_in, experts, bias=False, dtype=dtype)
        self.lora_A = nn.Parameter(torch.empty(experts, r, d_in, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(experts, d_out, r, dtype=dtype))
        for e in range(experts):  # as PEFT's LoRA: A random, B zero, so training starts at W
            nn.init.kaiming_uniform_(self.lora_A.data[e], a=math.sqrt(5))
        nn.init.normal_(self.router.weight, std=0.02)

    def router_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) mixing weights, summing to one over the experts."""
        return torch.softmax(self.router(x.to(self.router.weight.dtype)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.router_weights(x)
        hidden = torch.einsum("...i,eri->...er", x.to(self.lora_A.dtype), self.lora_A)
        update = torch.einsum("...er,eor,...e->...o", hidden, self.lora_B, gate)
        return self.base(x) + (self.scale * update).to(x.dtype)


def mlp_linear_names(model) -> list[str]:
    """Full names of the linear layers inside the model's MLP blocks."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and ".mlp." in f".{name}"]


def add_lora_moe(model, experts: int = 4, r: int = 8, alpha: float = 16) -> nn.Module:
    """Freeze `model` and route every MLP linear layer through E LoRA experts (in place)."""
    names = mlp_linear_names(model)
    if not names:
        raise ModelError("lora_moe: the model has no linear layer inside an '.mlp.' module")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, leaf = name.rsplit(".", 1)
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, LoraMoeLinear(getattr(parent, leaf), experts, r, alpha))
    return model


def moe_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters()
            if ".router." in n or n.endswith((".lora_A", ".lora_B"))}


def save_lora_moe(model, out_dir: str | Path, settings: dict, base_model: str) -> None:
    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file(moe_state(model), str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps({**settings, "base_model": str(base_model)}, indent=2))
    (out / MARKER_FILE).write_text(json.dumps({"kind": "lora_moe"}) + "\n")


def load_lora_moe(path: str | Path, dtype=None, device: str | None = None):
    """The base model with the saved experts and routers, ready to score."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = Path(path)
    settings = read_state_json(path / CONFIG_FILE, rebuild_hint(path))
    base = settings.pop("base_model")
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or torch.float32)
    except OSError as err:
        raise ModelError(f"{path}: cannot load its base model '{base}': {err}") from None
    add_lora_moe(model, **settings)
    state = load_file(str(path / WEIGHTS_FILE))
    missing = set(moe_state(model)) - set(state)
    if missing:
        raise ModelError(f"{path / WEIGHTS_FILE}: missing tensors, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, strict=False)
    model.eval()
    return model.to(device) if device else model
