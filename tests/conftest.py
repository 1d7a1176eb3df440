"""Shared fixtures: a tiny tokenizer and Llama model built inside the tests (no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("the a of to is in what which who where city born works capital answer instruction "
         "response paris london rome berlin alice bob carol dave yes no one two three four "
         "please write list name give short long first").split()


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 3
    corpus += ["### Instruction:\n### Response:\nBelow is an instruction that describes a task."]
    tok.train_from_iterator(corpus, trainer)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def build_tiny_model_dir(path: Path, seed: int = 0, tie: bool = False) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=tie,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "base")


def write_alpaca(path: Path, n: int, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    cities = ["paris", "london", "rome", "berlin"]
    names = ["alice", "bob", "carol", "dave"]
    with open(path, "w") as fh:
        for i in range(n):
            name = rng.choice(names)
            fh.write(json.dumps({
                "instruction": f"where is {name} born", "input": "",
                "output": f"{name} is born in {rng.choice(cities)}",
                "source": ["geo", "chat"][i % 2],
            }) + "\n")
    return path


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    return write_alpaca(tmp_path / "data.jsonl", 24)
