"""Weight penalties toward the base model, for the `l2` and `ewc` recipes.

Hand-written because TRL and PEFT have none: the penalty is added to SFTTrainer's loss by
`RecipeTrainer` (train/recipe_trainer.py). Both penalties are (coef / 2) * sum_i w_i * d_i^2
over the weight update d = W - W0 of every trained matrix: w_i = 1 for L2, the base model's
diagonal Fisher for EWC. For a LoRA adapter the update is scale * B @ A, the change the
adapter makes to the weight, not the adapter's own A and B.
"""

from __future__ import annotations

from typing import Iterator

import torch

PEFT_PREFIX = "base_model.model."


def lora_update_sq_norm(b: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """||scale * B @ A||_F^2 = scale^2 * trace((B^T B)(A A^T)), without forming B @ A.

    B is out x r, A is r x in: the two Gram matrices are r x r, so the cost is
    O(r^2 (in + out)) instead of O(r * in * out). trace(X Y) = sum(X * Y^T), and A A^T is
    symmetric.
    """
    return scale ** 2 * ((b.T @ b) * (a @ a.T)).sum()


def lora_layers(model) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(base weight name, B, A, scale) of every active LoRA adapter in a PEFT model."""
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        for adapter in lora_a:
            a = lora_a[adapter].weight
            b = module.lora_B[adapter].weight
            yield base_weight_name(name), b, a, float(module.scaling[adapter])


def base_weight_name(module_name: str) -> str:
    """`base_model.model.model.layers.0.mlp.up_proj` -> `model.layers.0.mlp.up_proj.weight`."""
    name = module_name.removeprefix(PEFT_PREFIX)
    return f"{name}.weight"


def is_lora(model) -> bool:
    return any(True for _ in lora_layers(model))


class WeightPenalty:
    """(coef / 2) * sum_i weight_i * (W - W0)_i^2 over the trained weights.

    `weights` maps a base weight name to a tensor of per-entry weights (EWC's Fisher), or is
    None for plain L2. For full fine-tuning, W0 is copied from the model when `bind` is
    called, before training changes anything (and before a checkpoint is resumed).
    """

    def __init__(self, coef: float, weights: dict[str, torch.Tensor] | None = None):
        self.coef = coef
        self.weights = weights
        self.anchor: dict[str, torch.Tensor] = {}
        self.lora = False
        self.last_sum = 0.0  # sum_i w_i d_i^2 of the last call (logged; scales coef: auto)

    def bind(self, model) -> "WeightPenalty":
        self.lora = is_lora(model)
        if not self.lora:
            self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()
                           if p.requires_grad}
        return self

    def __call__(self, model) -> torch.Tensor:
        total = None
        for name, term in self._terms(model):
            total = term if total is None else total + term
        if total is None:
            self.last_sum = 0.0
            return torch.zeros(())
        self.last_sum = float(total.detach())
        return 0.5 * self.coef * total

    def _terms(self, model) -> Iterator[tuple[str, torch.Tensor]]:
        if self.lora:
            for name, b, a, scale in lora_layers(model):
                if self.weights is None:
                    yield name, lora_update_sq_norm(b, a, scale)
                elif name in self.weights:  # the elementwise weighting needs B @ A itself
                    delta = scale * (b @ a)
                    yield name, (self.weights[name].to(delta) * delta.pow(2)).sum()
            return
        for name, p in model.named_parameters():
            if name not in self.anchor:
                continue
            delta = p - self.anchor[name].to(p)
            if self.weights is None:
                yield name, delta.pow(2).sum()
            elif name in self.weights:
                yield name, (self.weights[name].to(p) * delta.pow(2)).sum()


def fisher_diagonal(model, tokenizer, texts: list[str], max_length: int,
                    names: set[str] | None = None, normalize: bool = True) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher of `model` on `texts`: the mean over documents of the
    squared gradient of the document's mean token negative log-likelihood.

    Args:
        names: parameter names to keep (default: every parameter).
        normalize: divide by the mean entry over all kept parameters, so that a penalty
            coefficient means the same as for L2 on an average weight.
    """
    params = {n: p for n, p in model.named_parameters() if names is None or n in names}
    saved = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    used = 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt", truncation=True,
                        max_length=max_length)["input_ids"].to(device)
        if ids.shape[1] < 2:
            continue
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach().float().pow(2)
        used += 1
    model.zero_grad(set_to_none=True)
    for n, p in params.items():
        p.requires_grad_(saved[n])
    model.train(was_training)
    if used == 0:
        raise ValueError("no text of at least two tokens to estimate the Fisher on")
    fisher = {n: f / used for n, f in fisher.items()}
    if normalize:
        mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp(min=1e-30)
        fisher = {n: f / mean for n, f in fisher.items()}
    return fisher
