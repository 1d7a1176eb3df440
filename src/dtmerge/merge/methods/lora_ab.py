"""The paper code's LoRA merge: average the A matrices and the B matrices separately.

Kept under its own name so published numbers can be reproduced. It is *not* the average of
the updates: mean(B) @ mean(A) != mean(B @ A). Use `linear` for the exact average.
"""

from __future__ import annotations

import torch

from dtmerge.errors import MergeError
from dtmerge.merge.methods.base import Block, MergeMethod, normalized
from dtmerge.merge.sources import LoraModule


class LoraABAverage(MergeMethod):
    name = "lora_ab_average"
    pretty_name = "LoRA A/B average (paper code, inexact)"
    reference_url = "https://github.com/TingchenFu/ACL24-ExpertFusion"
    summary = "weighted average of LoRA A and B separately (reproduction only; not exact)"
    space = "deltas"

    def setup(self, sources, weights, params, **kwargs) -> dict:
        if any(s.kind != "lora" for s in sources):
            raise MergeError("lora_ab_average needs every input to be a LoRA adapter; "
                             "got a full model: use 'linear' instead")
        first = sources[0]
        for s in sources[1:]:
            if set(s.modules) != set(first.modules):
                diff = sorted(set(s.modules) ^ set(first.modules))[0]
                raise MergeError(f"lora_ab_average: adapters {first.path} and {s.path} adapt "
                                 f"different modules (first difference: '{diff}')")
            for name, m in s.modules.items():
                f = first.modules[name]
                if m.rank != f.rank or abs(m.scaling - f.scaling) > 1e-12:
                    raise MergeError(
                        f"lora_ab_average: '{name}' has rank {f.rank} / scaling {f.scaling:g} in "
                        f"{first.path} but rank {m.rank} / scaling {m.scaling:g} in {s.path}; "
                        "averaging A and B needs equal ranks and scalings (use 'linear')")
        return {"lora": sources}

    def averaged(self, name: str, sources, weights: list[float]) -> LoraModule:
        """The module whose A and B are the weighted means of the adapters' A and B."""
        mods = [s.modules[name] for s in sources]
        c = normalized(weights, mods[0].A)
        A = sum(ck * m.A for ck, m in zip(c, mods))
        B = sum(ck * m.B for ck, m in zip(c, mods))
        return LoraModule(A, B, mods[0].scaling, mods[0].fan_in_fan_out)

    def combine(self, block: Block) -> torch.Tensor:
        sources = block.extras["lora"]
        if block.name not in sources[0].modules:
            return torch.zeros_like(block.base)
        return self.averaged(block.name, sources, block.weights).delta(block.rows)
