"""Fisher-weighted averaging (Matena & Raffel 2022) with a diagonal Fisher per sub-model.

Each model's diagonal Fisher is estimated on that model's own data portion (the squared
gradient of the completion log-likelihood, averaged over examples: the empirical Fisher),
saved to a temporary safetensors file, and streamed block by block like the weights:
    W = sum_k w_k (F_k + eps) W_k / sum_k w_k (F_k + eps).
No maintained library offers Fisher merging for causal LMs, so this is written by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dtmerge.errors import DataError, MergeError
from dtmerge.merge.methods.base import Block, MergeMethod
from dtmerge.merge.tensor_io import SafetensorsReader


def read_examples(path: Path, limit: int) -> list[dict]:
    """The first `limit` prompt/completion records of a normalised JSONL file."""
    out = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["prompt"], rec["completion"]
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{lineno}: not a JSON record with 'prompt' and "
                                "'completion' (the normalised training format)") from None
            out.append(rec)
            if len(out) >= limit:
                break
    if not out:
        raise DataError(f"{path}: no examples to estimate the Fisher information on")
    return out


def _load_for_fisher(source, base_path: Path):
    from transformers import AutoModelForCausalLM

    if source.kind == "lora":
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        return PeftModel.from_pretrained(base, source.path).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)


def _tokenizer(source_dir: Path, base_path: Path):
    from transformers import AutoTokenizer

    from dtmerge.models import ALPACA_CHAT_TEMPLATE

    src = source_dir if (source_dir / "tokenizer_config.json").is_file() else base_path
    tok = AutoTokenizer.from_pretrained(src)
    if not tok.chat_template:
        tok.chat_template = ALPACA_CHAT_TEMPLATE
    return tok


def estimate_fisher(source, base_path: Path, data_path: Path, out_file: Path,
                    num_examples: int = 32, max_length: int = 256) -> Path:
    """Write the diagonal empirical Fisher of `source` on `data_path` to `out_file`.

    Args:
        source: a FullModelSource or LoraAdapterSource (an adapter is folded into the base).
        base_path: the base model directory.
        data_path: JSONL in the normalised prompt/completion format.
        out_file: safetensors file to write, one tensor per model parameter.
        num_examples: examples used (one gradient each).
        max_length: tokens per example (longer ones are cut).
    """
    from safetensors.torch import save_file

    model = _load_for_fisher(source, base_path)
    model.requires_grad_(True)  # PEFT leaves the folded base frozen: no gradient, no Fisher
    tok = _tokenizer(Path(source.path), base_path)
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    used = 0
    for rec in read_examples(Path(data_path), num_examples):
        prompt = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=False)
        ids = tok(full, add_special_tokens=False, return_tensors="pt").input_ids[:, :max_length]
        n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
        labels = ids.clone()
        labels[:, :n_prompt] = -100
        if (labels != -100).sum() < 1:
            continue  # the prompt alone fills max_length: no completion token to score
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=labels).loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n].add_(p.grad.detach() ** 2)
        used += 1
    if not used:
        raise DataError(f"{data_path}: every example's prompt exceeds max_length={max_length}")
    save_file({n: (f / used).contiguous() for n, f in fisher.items()}, str(out_file))
    return out_file


class Fisher(MergeMethod):
    name = "fisher"
    pretty_name = "Fisher-weighted averaging"
    reference_url = "https://arxiv.org/abs/2111.09832"
    summary = "average weighted per parameter by each model's diagonal Fisher on its own data"
    space = "weights"
    defaults = {"num_examples": 32, "max_length": 256, "epsilon": 1e-8}

    def setup(self, sources, weights, params, fisher_data=None, base_path=None, workdir=None,
              log=None, **kwargs) -> dict:
        if not fisher_data:
            raise MergeError("merge method 'fisher' needs fisher_data: one JSONL data file per "
                             "model (each sub-model's own portion)")
        if len(fisher_data) != len(sources):
            raise MergeError(f"fisher_data has {len(fisher_data)} files for {len(sources)} models")
        readers = []
        for k, (src, data) in enumerate(zip(sources, fisher_data)):
            if not Path(data).is_file():
                raise MergeError(f"fisher_data file '{data}' does not exist")
            if log:
                log(f"[merge] estimating the Fisher of {src.path} on {data}")
            out = Path(workdir) / f"fisher_{k}.safetensors"
            estimate_fisher(src, Path(base_path), Path(data), out,
                            int(params["num_examples"]), int(params["max_length"]))
            readers.append(SafetensorsReader([out]))
        return {"fisher": readers}

    def combine(self, block: Block) -> torch.Tensor:
        eps = float(block.params["epsilon"])
        num = torch.zeros_like(block.tensors[0])
        den = torch.zeros_like(block.tensors[0])
        for w, t, reader in zip(block.weights, block.tensors, block.extras["fisher"]):
            if block.name in reader.infos:
                f = reader.read(block.name, block.rows).to(num.dtype).add_(eps).mul_(w)
            else:  # no Fisher for this tensor (e.g. a buffer): plain weighted average
                f = torch.full_like(num, w)
            num.add_(f * t)
            den.add_(f)
        return num.div_(den)
