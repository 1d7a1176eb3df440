"""Data the recipes train on: replay's mix, curated's selection and IFD, plain text."""

import json

import pytest
import torch

from recipe_helpers import records, write_jsonl
from dtmerge.data.text import read_text_documents
from dtmerge.errors import DataError
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.curated import ifd_score, top_fraction
from dtmerge.recipes.replay import mix_with_text


def test_plain_text_one_document_per_line_or_a_text_column(tmp_path, text_file):
    assert len(read_text_documents(text_file)) == 7
    jl = write_jsonl(tmp_path / "t.jsonl", [{"text": "a b"}, {"text": " "}, {"text": "c"}])
    assert read_text_documents(jl) == ["a b", "c"]
    bad = write_jsonl(tmp_path / "b.jsonl", [{"body": "x"}])
    with pytest.raises(DataError, match=r"b.jsonl: record 1 has no string 'text' column \(columns: body\)"):
        read_text_documents(bad)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 2.0])
def test_replay_mixes_at_the_requested_ratio(ratio):
    recs = records(10)
    mixed = mix_with_text(recs, [f"doc {i}" for i in range(6)], ratio, seed=0)
    texts = [m for m in mixed if "text" in m]
    assert len(texts) == round(ratio * 10) and len(mixed) - len(texts) == 10
    assert all(t["source"] == "replay" for t in texts)
    # every document is used before any is repeated
    used = [t["text"] for t in texts]
    assert len(set(used)) == min(len(used), 6)


def test_replay_recipe_writes_the_mix_and_trains_on_text_too(run_with_data, text_file):
    from dtmerge.recipes.stages import prepare_stage, train_stage

    cfg, run = run_with_data([{"name": "replay", "text": str(text_file), "ratio": 0.5}])
    torch.set_num_threads(1)
    prepare_stage(cfg, run, log=lambda m: None)
    train_stage(cfg, run, log=lambda m: None)
    mixed = [json.loads(x) for x in (run.data_dir / "replay" / "mixed.jsonl").read_text().splitlines()]
    assert sum("text" in m for m in mixed) == 4 and sum("prompt" in m for m in mixed) == 8
    job = run.job("train:replay")
    assert job["status"] == "done" and job["examples"] == 8 and job["trained_examples"] == 12
    assert (run.model("replay") / "adapter_config.json").exists()


def test_replayed_text_is_trained_on_every_token(tiny_model_dir):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from dtmerge.train.recipe_trainer import with_replay

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prepared = Dataset.from_list([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "extra": 1}])
    out = with_replay(prepared, ["alice is born in rome"], tok, max_length=64)
    assert len(out) == 2 and out.column_names == ["input_ids", "labels"]
    assert out[1]["labels"] == out[1]["input_ids"] and out[1]["input_ids"][-1] == tok.eos_token_id


def test_top_fraction_keeps_the_highest_scores():
    scores = [0.3, 0.9, 0.1, 0.9, 0.5]
    assert top_fraction(scores, 0.4) == [1, 3]
    assert top_fraction(scores, 0.5) == [1, 3, 4]  # ceil(2.5) = 3
    assert top_fraction(scores, 1.0) == [0, 1, 2, 3, 4]


def _independent_ifd(model, tok, record):
    """L(A|Q) / L(A) written out: answer tokens scored by log_softmax by hand."""
    head = tok.apply_chat_template(record["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(record["prompt"] + record["completion"], tokenize=False)
    q = tok(head, add_special_tokens=False)["input_ids"]
    a = tok(full[len(head):], add_special_tokens=False)["input_ids"]

    def loss(context):
        ids = torch.tensor([context + a])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        return -sum(logp[len(context) - 1 + i, t].item() for i, t in enumerate(a)) / len(a)

    return loss(q) / loss([tok.bos_token_id])


def test_default_ifd_equals_an_independent_computation(tiny_model_dir, make_cfg):
    from dtmerge.models import load_model, load_tokenizer

    cfg = make_cfg()
    model, tok = load_model(cfg.model).eval(), load_tokenizer(cfg.model)
    for rec in records(3):
        assert ifd_score(model, tok, rec, 512) == pytest.approx(_independent_ifd(model, tok, rec), rel=1e-5)


def test_curated_keeps_the_fraction_with_the_highest_ifd(run_with_data):
    cfg, run = run_with_data([{"name": "curated", "fraction": 0.25}])
    (curated,) = resolve_recipes(cfg)
    curated.prepare(run, log=lambda m: None)
    saved = json.loads((run.data_dir / "curated" / "scores.json").read_text())
    kept = [json.loads(x) for x in curated.data_file(run).read_text().splitlines()]
    assert len(kept) == 2
    assert saved["kept"] == top_fraction(saved["scores"], 0.25, frozenset(saved["dropped"]))
    assert all(saved["scores"][i] < 1 for i in saved["kept"])
    assert kept == [records(8)[i] for i in saved["kept"]]


def test_curated_by_a_user_column(run_with_data):
    cfg, run = run_with_data([{"name": "curated", "fraction": 0.5, "column": "quality"}])
    rows = [dict(r, quality=q) for r, q in zip(records(4), [0.2, 0.8, 0.5, 0.1])]
    write_jsonl(run.all_data, rows)
    (curated,) = resolve_recipes(cfg)
    curated.prepare(run, log=lambda m: None)
    kept = [json.loads(x)["quality"] for x in curated.data_file(run).read_text().splitlines()]
    assert kept == [0.8, 0.5]
    write_jsonl(run.all_data, records(4))
    with pytest.raises(DataError, match="example 1 .* no numeric 'quality' column"):
        curated.prepare(run, log=lambda m: None)


def test_data_mix_adds_sources_at_their_ratio_with_their_names(tmp_path):
    from tiny import write_alpaca
    from dtmerge.config import config_from_dict
    from dtmerge.data import prepare_data, read_jsonl
    from dtmerge.rundir import RunDir

    main = write_alpaca(tmp_path / "main.jsonl", 10)
    extra = write_alpaca(tmp_path / "extra.jsonl", 8, seed=1)
    cfg = config_from_dict({
        "name": "mix", "runs_dir": str(tmp_path / "runs"), "model": {"path": "unused"},
        "data": {"path": str(main), "eval_fraction": 0.0,
                 "mix": [{"path": str(extra), "ratio": 0.5, "name": "chat"},
                         {"path": str(extra), "ratio": 2.0}]}})
    run = RunDir(cfg.run_dir)
    prepare_data(cfg, run, log=lambda m: None)
    names = [r["dataset"] for r in read_jsonl(run.all_data)]
    assert names.count("main") == 10 and names.count("chat") == 4 and names.count("extra") == 16
    with pytest.raises(Exception, match="ratio"):
        config_from_dict({**cfg.model_dump(mode="json"),
                          "data": {"path": str(main), "mix": [{"path": str(extra), "ratio": 0}]}})


def test_demo_recipe_entries(tmp_path):
    from types import SimpleNamespace

    from dtmerge.demo.testbed.demo import recipe_entries
    from dtmerge.errors import ConfigError

    tb = SimpleNamespace(root=tmp_path)
    entries = recipe_entries(["all"], tb, 4)
    assert [e["name"] for e in entries][:2] == ["sft", "dtm"] and len(entries) == 10
    assert {e["name"]: e for e in entries}["replay"]["text"] == str(tmp_path / "data" / "pretrain.txt")
    assert [e["name"] for e in recipe_entries(["sft", "dtm", "l2"], tb, 4)] == ["sft", "dtm", "l2"]
    with pytest.raises(ConfigError, match="Did you mean 'replay'"):
        recipe_entries(["replai"], tb, 4)
    assert recipe_entries(None, tb, 4) is None


def test_realdata_general_text_shares_no_file_with_the_scored_passages():
    from dtmerge.demo.realdata.heldout import select_heldout

    selection = select_heldout()
    scored = {p.origin for p in selection.passages}
    assert selection.general and not scored & {p.origin for p in selection.general}
