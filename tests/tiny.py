"""Tiny tokenizer, model and data builders for tests and benchmarks (no network).

A module of its own (not conftest) so tests and benchmarks can import it by a unique name.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def write_mc_task(root: Path, name: str, rows: list[dict], category: str = "knowledge") -> Path:
    """A local lm-eval multiple-choice task over `rows` ({question, choices, answer})."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer", "metric_list": [{"metric": "acc"}],
        "metadata": {"version": 1.0, "category": category},
    }))
    return root


def write_manifest(run, jobs: dict) -> None:
    """A run directory whose manifest holds `jobs` (name -> record), as a stage would leave it."""
    import json
    from pathlib import Path

    Path(run).mkdir(parents=True, exist_ok=True)
    (Path(run) / "manifest.json").write_text(json.dumps({"jobs": jobs}))


ROLLING_DOCS = [
    "alice is born in paris. bob is born in rome.",
    "the capital of rome is rome, and the answer is short.",
    "carol works in london; dave works in berlin. who is born where?",
    "please write a long list of the first city names: paris, london, rome, berlin.",
    "one, two, three, four: which answer is the response to the instruction?",
    "where is the city of the capital? it is the first city in the list.",
]


def write_rolling_task(root: Path, name: str = "tiny_roll", docs: list[str] = ROLLING_DOCS,
                       category: str = "knowledge") -> Path:
    """A local language-modelling task like lm-eval's wikitext (loglikelihood_rolling over
    each document; word/byte perplexity and bits per byte, all lower is better)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / f"{name}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (root / f"{name}.yaml").write_text(f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / f'{name}.jsonl'}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
  category: {category}
""")
    return root
