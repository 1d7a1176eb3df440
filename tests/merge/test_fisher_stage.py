"""Fisher merging on each model's own data, the run-directory merge stage, and `dtm merge`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dtmerge.merge import merge_models
from dtmerge.merge.methods.fisher import estimate_fisher
from dtmerge.merge.sources import FullModelSource

from merge_zoo import load_dir, make_lora, read_json

CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .,:#?!\n") + ["[UNK]", "</s>"]


def add_char_tokenizer(model_dir: Path) -> None:
    """A character-level tokenizer (no download): enough for chat templates and Fisher."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>")
    fast.save_pretrained(model_dir)


def write_portion(path: Path, seed: int, n: int = 4) -> Path:
    lines = [json.dumps({"prompt": [{"role": "user", "content": f"add {seed} and {i}"}],
                         "completion": [{"role": "assistant", "content": f"it is {seed + i}."}]})
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fisher_estimate_and_merge(zoo, tmp_path):
    base = zoo["base"]
    add_char_tokenizer(base)
    data = [write_portion(tmp_path / f"p{k}.jsonl", seed=k) for k in range(2)]
    models = zoo["full"][:2]
    merge_models(base, models, tmp_path / "out", method="fisher", fisher_data=data,
                 params={"num_examples": 3})
    fishers = []
    for k, (m, d) in enumerate(zip(models, data)):
        out = estimate_fisher(FullModelSource(m), base, d, tmp_path / f"f{k}.safetensors", 3)
        fishers.append(load_dir_file(out))
    weights = [load_dir(m) for m in models]
    merged = load_dir(tmp_path / "out")
    name = "model.layers.0.mlp.down_proj.weight"
    assert all((f[name] > 0).any() for f in fishers)
    f0, f1 = (f[name].double() + 1e-8 for f in fishers)
    ref = (f0 * weights[0][name] + f1 * weights[1][name]) / (f0 + f1)
    assert torch.allclose(merged[name].double(), ref, atol=1e-6)
    # where one model's Fisher dominates, the merge follows that model
    assert not torch.allclose(merged[name], (weights[0][name] + weights[1][name]) / 2, atol=1e-5)


def load_dir_file(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_fisher_matches_hand_computed_gradient(zoo, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = zoo["base"]
    add_char_tokenizer(base)
    data = write_portion(tmp_path / "p.jsonl", seed=3, n=1)
    out = estimate_fisher(FullModelSource(base), base, data, tmp_path / "f.safetensors", 1)
    fisher = load_dir_file(out)
    # the same quantity by hand: squared gradient of the mean NLL of the completion tokens
    from dtmerge.models import ALPACA_CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = ALPACA_CHAT_TEMPLATE
    rec = json.loads(data.read_text())
    prompt = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=False)
    ids = torch.tensor([tok(full, add_special_tokens=False).input_ids])
    n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    targets = ids[0, 1:]
    nll = -logp[torch.arange(len(targets)), targets][n_prompt - 1:].mean()
    nll.backward()
    name = "model.layers.1.self_attn.q_proj.weight"
    grad = dict(model.named_parameters())[name].grad
    assert torch.allclose(fisher[name], grad ** 2, atol=1e-9, rtol=1e-4)


def _run_config(tmp_path, base, method="linear"):
    from dtmerge.config import config_from_dict

    return config_from_dict({
        "name": "r", "runs_dir": str(tmp_path / "runs"),
        "model": {"path": str(base)}, "data": {"path": "unused.jsonl"},
        "disperse": {"num_portions": 2}, "merge": {"method": method},
        "eval": {"variants": ["base", "dtm"]},  # no SFT trained here: no interpolation line
    })


def test_build_stage_merges_the_own_dtm_skips_when_done_and_redoes_on_change(zoo, tmp_path):
    from dtmerge.recipes.stages import build_stage
    from dtmerge.rundir import RunDir

    cfg = _run_config(tmp_path, zoo["base"])
    run = RunDir(cfg.run_dir)
    for k in range(2):
        make_lora(zoo["base"], run.model(f"sub_{k}"), seed=40 + k)
    logs = []
    build_stage(cfg, run, log=logs.append)
    assert run.job("merge")["status"] == "done"
    out = load_dir(run.model("dtm"))
    refs = [load_dir(run.model(f"sub_{k}")) for k in range(2)]  # adapters: check one module
    assert refs and out["model.layers.0.mlp.up_proj.weight"].shape == (48, 32)
    build_stage(cfg, run, log=logs.append)
    assert any(line.startswith("[skip] merge") for line in logs)
    cfg2 = _run_config(tmp_path, zoo["base"], method="ties")
    build_stage(cfg2, run, log=logs.append)
    assert any(line.startswith("[redo] merge") for line in logs)
    assert read_json(run.model("dtm") / "merge_record.json")["method"] == "ties"


def test_cli_explicit_models_and_list(zoo, tmp_path, capsys):
    from dtmerge.cli.main import main

    assert main(["merge", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "ties" in listing and "arxiv.org/abs/2306.01708" in listing
    rc = main(["merge", "--base", str(zoo["base"]), "--models", *map(str, zoo["full"][:2]),
               "--out", str(tmp_path / "out"), "--method", "ties", "--param", "density=0.7",
               "--weights", "1", "3"])
    assert rc == 0
    record = read_json(tmp_path / "out" / "merge_record.json")
    assert record["params"]["density"] == 0.7 and record["weights"] == [1.0, 3.0]
    assert main(["merge", "--base", str(zoo["base"]), "--models", str(zoo["full"][0]),
                 "--out", str(tmp_path / "o2"), "--method", "ties", "--param", "dens=1"]) == 2
    assert "no parameter 'dens'" in capsys.readouterr().err


def test_cli_on_a_run_directory(zoo, tmp_path):
    from dtmerge.cli.main import main
    from dtmerge.rundir import RunDir

    cfg = _run_config(tmp_path, zoo["base"])
    run = RunDir(cfg.run_dir)
    for k in range(2):
        make_lora(zoo["base"], run.model(f"sub_{k}"), seed=50 + k)
    (run.root / "config.yaml").write_text(cfg.to_yaml())
    assert main(["merge", str(run.root), "--method", "dare_linear", "--param", "density=0.9",
                 "--weights", "2", "1"]) == 0
    record = read_json(run.model("dtm") / "merge_record.json")
    assert record["method"] == "dare_linear" and record["params"]["density"] == 0.9
    assert record["weights"] == [2.0, 1.0]
    assert [m["kind"] for m in record["models"]] == ["lora", "lora"]


def test_fisher_of_lora_adapters(zoo, tmp_path):
    """Adapters are folded into the base for the Fisher: its gradients must flow (PEFT leaves
    the folded base frozen)."""
    base = zoo["base"]
    add_char_tokenizer(base)
    data = [write_portion(tmp_path / f"p{k}.jsonl", seed=k) for k in range(2)]
    rec = merge_models(base, zoo["lora"][:2], tmp_path / "out", method="fisher",
                       fisher_data=data, params={"num_examples": 2})
    assert rec["method"] == "fisher" and (tmp_path / "out" / "model.safetensors").exists()
