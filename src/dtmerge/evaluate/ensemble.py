"""The `ensemble` recipe's model: K sub-models whose next-token probabilities are averaged.

An lm-eval `TemplateLM` (lm-eval has no ensemble model). At every position the ensemble's
log-probability is log(mean_k p_k) = logsumexp_k(log p_k) - log K, so log-likelihoods,
rolling losses and greedy generation all use the averaged distribution. Scoring costs K
forward passes per token: K times a single model's inference.

A model directory of kind "ensemble" holds `dtmerge_model.json`:
{"kind": "ensemble", "members": [dirs], "base_model": dir}.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from lm_eval.api.model import TemplateLM

from dtmerge.errors import ModelError
from dtmerge.models.marker import MARKER_FILE
from dtmerge.rundir import read_state_json, rebuild_hint


def write_ensemble_dir(out_dir: Path, members: list[str], base_model: str,
                       member_hashes: list[str | None] | None = None) -> None:
    """The members' content hashes are part of the file, so the directory's hash (the
    evaluation fingerprint) changes when a member is retrained."""
    from dtmerge.rundir import atomic_write_json

    atomic_write_json(Path(out_dir) / MARKER_FILE, {
        "kind": "ensemble", "members": [str(m) for m in members], "base_model": str(base_model),
        "member_hashes": member_hashes or []})


def ensemble_logprobs(models, input_ids: torch.Tensor) -> torch.Tensor:
    """(batch, seq, vocab) log of the mean of the members' next-token probabilities."""
    logps = torch.stack([torch.log_softmax(m(input_ids=input_ids).logits.float(), dim=-1)
                         for m in models])
    return torch.logsumexp(logps, dim=0) - math.log(len(models))


def _load_member(path: str, base_model: str, device: str):
    from transformers import AutoModelForCausalLM

    try:
        if (Path(path) / "adapter_config.json").is_file():
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
            model = PeftModel.from_pretrained(base, path).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as err:
        raise ModelError(f"ensemble member '{path}' cannot be loaded: {err}") from None
    return model.to(device).eval()


class EnsembleLM(TemplateLM):
    """lm-eval model averaging K causal LMs' next-token distributions."""

    def __init__(self, models, tokenizer, device: str = "cpu", max_length: int = 2048,
                 add_bos_token: bool | None = None):
        super().__init__()
        self.models, self.tokenizer, self._device = list(models), tokenizer, device
        self.max_length = max_length
        # HFLM's attribute of the same name (None: the tokenizer's own default), read by
        # HFLM.tok_encode above
        self.add_bos_token = add_bos_token

    @classmethod
    def from_dir(cls, path: str | Path, device: str = "cpu", tokenizer=None) -> "EnsembleLM":
        from transformers import AutoTokenizer

        spec = read_state_json(Path(path) / MARKER_FILE, rebuild_hint(Path(path)))
        members = [_load_member(m, spec["base_model"], device) for m in spec["members"]]
        tok = tokenizer or AutoTokenizer.from_pretrained(spec["members"][0])
        limit = getattr(members[0].config, "max_position_embeddings", 2048) or 2048
        return cls(members, tok, device, max_length=min(int(limit), 4096))

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is scored after: BOS when there is one (as lm-eval's HFLM)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template=False):
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history, add_generation_prompt=True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens=None, left_truncate_len=None,
                   **kwargs) -> list[int]:
        """HFLM's own `tok_encode` (lm-eval's huggingface.py), so that the ensemble sees the
        same tokens as every other variant: by default the tokenizer's special tokens are
        added (the BOS Gemma and Llama tokenizers prepend), unless the string already starts
        with the prefix token's text; `add_bos_token` overrides, as HFLM's does."""
        from lm_eval.models.huggingface import HFLM

        return HFLM.tok_encode(self, string, add_special_tokens=add_special_tokens,
                               left_truncate_len=left_truncate_len)

    def tok_decode(self, tokens) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    @torch.no_grad()
    def _continuation_logprob(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        ids = (context + continuation)[-(self.max_length + 1):][:-1]
        logp = ensemble_logprobs(self.models, torch.tensor([ids], device=self._device))[0]
        n = len(continuation)
        logp = logp[-n:]
        target = torch.tensor(continuation, device=self._device)
        total = logp.gather(-1, target[:, None]).sum().item()
        greedy = bool((logp.argmax(-1) == target).all().item())
        return total, greedy

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        return [self._continuation_logprob(ctx, cont) for _, ctx, cont in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for req in requests:
            tokens = self.tok_encode(req.args[0])
            windows = map(make_disjoint_window, get_rolling_token_windows(
                token_list=tokens, prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1))
            out.append(sum(self._continuation_logprob(list(c), list(t))[0] for c, t in windows))
        return out

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding from the averaged distribution (no KV cache: small models)."""
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_gen_toks", 256))
            ids = self.tok_encode(context)
            new: list[int] = []
            text = ""
            for _ in range(max_new):
                window = (ids + new)[-self.max_length:]
                logp = ensemble_logprobs(self.models, torch.tensor([window], device=self._device))
                token = int(logp[0, -1].argmax())
                if token == self.eot_token_id:
                    break
                new.append(token)
                text = self.tok_decode(new)
                if any(u and u in text for u in until):
                    break
            for u in until:
                if u and u in text:
                    text = text.split(u)[0]
            out.append(text)
        return out
