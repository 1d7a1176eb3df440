"""Train the testbed's tokenizer and pretrain its small Llama base model.

The tokenizer is a byte-level BPE from the `tokenizers` library, wrapped as a transformers
`PreTrainedTokenizerFast`; the model is a transformers `LlamaForCausalLM`. Pretraining is a
plain torch loop over packed token blocks: at ~1M parameters a Trainer's per-step overhead
would cost a noticeable share of the few-minute budget.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from dtmerge.models import ALPACA_CHAT_TEMPLATE

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass(frozen=True)
class ModelSize:
    """Architecture and pretraining budget of one testbed size."""

    hidden: int
    layers: int
    heads: int
    vocab: int
    steps: int
    batch: int
    seq_len: int
    lr: float
    # Std of the initial weights. transformers' 0.02 suits wide models; at hidden 128 it keeps
    # attention scores near zero for hundreds of steps, and the model learns to read its
    # context (copy a word, look up a story) only after a long plateau (measured: a 3-layer
    # model could not copy a one-word list after 300 steps at 0.02, and did at 0.1).
    init_std: float = 0.02


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE over `texts`, as a `PreTrainedTokenizerFast` with pad/bos/eos set.

    No BOS is added automatically: training (TRL) and evaluation (lm-eval) then see the same
    token sequences without either needing to know about it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", model_max_length=512)
    fast.chat_template = ALPACA_CHAT_TEMPLATE
    return fast


def _packed_blocks(tokenizer, docs: list[str], seq_len: int):
    """Pack whole documents (each followed by EOS) into `seq_len` blocks, each block starting
    at a document boundary; the tail of a block is padding, masked out of the loss.

    Why not plain concatenation cut every `seq_len` tokens: a premise cut from its conclusion
    (or a fact paragraph cut mid-sentence) teaches the model to guess rather than to read its
    context. Documents longer than a block are truncated.

    Returns:
        (input_ids, labels): int64 tensors of shape (blocks, seq_len); labels are -100 on padding.
    """
    import torch

    rows: list[list[int]] = []
    current: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        enc = (enc + [tokenizer.eos_token_id])[:seq_len]
        if current and len(current) + len(enc) > seq_len:
            rows.append(current)
            current = []
        current += enc
    if current:
        rows.append(current)
    ids = torch.full((len(rows), seq_len), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), seq_len), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, :len(row)] = ids[i, :len(row)]
    return ids, labels


def pretrain(tokenizer, docs: list[str], size: ModelSize, seed: int, out_dir: Path,
             log=print) -> dict:
    """Pretrain a fresh Llama on `docs` and save model + tokenizer to `out_dir`.

    Returns:
        Timing and loss statistics (wall and process CPU seconds, final loss, parameters).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.hidden * 3,
        num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.heads, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=size.init_std)
    model = LlamaForCausalLM(config)
    blocks, block_labels = _packed_blocks(tokenizer, docs, size.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=size.lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, size.steps // 20)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return size.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, size.steps - warmup)
        return size.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    order = random.Random(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    model.train()
    losses = []
    for step in range(size.steps):
        idx = torch.tensor([order.randrange(len(blocks)) for _ in range(size.batch)])
        loss = model(input_ids=blocks[idx], labels=block_labels[idx]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 100 == 0 or step == size.steps - 1:
            log(f"  pretrain step {step + 1}/{size.steps} loss {loss.item():.3f}")
    stats = {
        "pretrain_wall_s": round(time.perf_counter() - wall, 1),
        "pretrain_cpu_s": round(time.process_time() - cpu, 1),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_seen": size.steps * size.batch * size.seq_len,
        "corpus_tokens": int((block_labels != -100).sum()),
    }
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return stats
