"""In-process scoring with a causal LM: per-token losses on completions, choice log-likelihoods.

Written by hand because the monitor must score the model *inside* a training run (no lm-eval
call per probe, which would reload the model), and the token analysis needs per-token losses,
which no library exposes.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


def encode_record(tokenizer, record: dict, max_length: int = 512) -> tuple[list[int], int]:
    """Token ids of a normalised record and the index where its completion starts.

    The prompt is rendered with the chat template and a generation prompt, as in training, so
    the completion tokens are exactly those the training loss covers.
    """
    prompt = list(record["prompt"])
    completion = list(record["completion"])
    if tokenizer.chat_template:
        p_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        full = tokenizer.apply_chat_template(prompt + completion, tokenize=True)
        p_ids, full = _as_ids(p_ids), _as_ids(full)
    else:
        p_text = "\n".join(m["content"] for m in prompt) + "\n"
        p_ids = tokenizer(p_text, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(completion[0]["content"], add_special_tokens=False)["input_ids"]
        full = p_ids + c_ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id else [])
    start = min(len(p_ids), len(full) - 1)
    return full[:max_length], min(start, max_length - 1)


def _as_ids(out) -> list[int]:
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def _batches(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _pad(seqs: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def token_logprobs(model, seqs: Sequence[list[int]], pad_id: int = 0,
                   batch_size: int = 16) -> list[torch.Tensor]:
    """Log-probability of every token given its prefix (entry 0 of each output is position 1).

    The model is put in eval mode for the call and restored afterwards (the monitor calls
    this in the middle of training, where dropout must not perturb the score).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    # Batches of similar length waste little compute on padding; results return in input order.
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[torch.Tensor | None] = [None] * len(seqs)
    try:
        for idx in _batches(order, batch_size):
            chunk = [seqs[i] for i in idx]
            ids, mask = _pad(chunk, pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            for j, i in enumerate(idx):
                out[i] = picked[j, :len(seqs[i]) - 1].cpu()
    finally:
        if was_training:
            model.train()
    return out


def completion_token_losses(model, encoded: Sequence[tuple[list[int], int]], pad_id: int = 0,
                            batch_size: int = 16) -> list[tuple[list[int], torch.Tensor]]:
    """Per-token negative log-likelihood of each record's completion tokens.

    Returns:
        One (completion token ids, losses) pair per record.
    """
    logps = token_logprobs(model, [ids for ids, _ in encoded], pad_id, batch_size)
    out = []
    for (ids, start), lp in zip(encoded, logps):
        # lp[j] scores ids[j + 1], so completion tokens ids[start:] are lp[start - 1:]
        out.append((ids[start:], -lp[max(start - 1, 0):]))
    return out


def mean_completion_loss(model, encoded: Sequence[tuple[list[int], int]], pad_id: int = 0,
                         batch_size: int = 16) -> float:
    """Token-weighted mean loss over the completions (what SFT minimises)."""
    pairs = completion_token_losses(model, encoded, pad_id, batch_size)
    total = sum(float(loss.sum()) for _, loss in pairs)
    count = sum(len(loss) for _, loss in pairs)
    return total / max(count, 1)


def choice_scores(model, contexts: Sequence[list[int]], continuations: Sequence[list[int]],
                  pad_id: int = 0, batch_size: int = 32) -> list[float]:
    """Summed log-likelihood of each continuation given its context (lm-eval's MC scoring)."""
    seqs = [c + k for c, k in zip(contexts, continuations)]
    logps = token_logprobs(model, seqs, pad_id, batch_size)
    return [float(lp[len(c) - 1:].sum()) for lp, c in zip(logps, contexts)]
