import random

import pytest
import torch

from dtmerge.evaluate.bias import boilerplate_bias, eval_bias, position_bias, token_loss_shift
from dtmerge.models import ALPACA_CHAT_TEMPLATE


def _items(preds, golds):
    return [{"doc_id": i, "pred": p, "gold": g} for i, (p, g) in enumerate(zip(preds, golds))]


def test_position_bias_flags_planted_letter_preference():
    rng = random.Random(0)
    golds = [rng.randrange(4) for _ in range(400)]
    biased = [0 if rng.random() < 0.6 else g for g in golds]  # picks "A" 60% of the time
    res = position_bias(_items(biased, golds), 4)
    assert res["most_picked"] == "A" and res["over_pick"] > 0.3
    assert res["tv_distance"] > 0.3 and res["p_value"] < 1e-6
    fair = position_bias(_items(golds, golds), 4)
    assert fair["tv_distance"] == 0 and fair["p_value"] > 0.99
    assert position_bias([], 4) == {"n": 0}


def test_position_bias_chi2_matches_scipy_chisquare():
    from scipy.stats import chisquare

    rng = random.Random(3)
    for k in (2, 4, 5):
        golds = [rng.randrange(k) for _ in range(50)]
        preds = [rng.choice([0, 0, rng.randrange(k)]) for _ in range(50)]
        res = position_bias(_items(preds, golds), k)
        n = len(golds)
        expected = [(golds.count(i) + 0.5) / (n + 0.5 * k) * n for i in range(k)]
        ref = chisquare([preds.count(i) for i in range(k)], expected)
        assert res["chi2"] == pytest.approx(float(ref.statistic), rel=1e-12)
        assert res["p_value"] == pytest.approx(float(ref.pvalue), rel=1e-9)


def test_boilerplate_bias_measures_shared_openings_and_length():
    responses = ["Sure! Here is the answer: paris"] * 8 + ["rome", "berlin is it"]
    res = boilerplate_bias(responses, ["paris"] * 10)
    assert res["top_opening"] == "sure here is" and res["top_opening_share"] == 0.8
    assert res["length_ratio"] > 4
    varied = boilerplate_bias(["paris", "rome", "berlin"], ["paris", "rome", "berlin"])
    assert varied["top_opening_share"] == pytest.approx(1 / 3) and varied["length_ratio"] == 1


def test_eval_bias_dispatches_by_item_kind():
    result = {"tasks": {"mc": {"items": _items([0, 0, 1], [0, 1, 1])},
                        "gen": {"items": [{"doc_id": 0, "pred": None, "gold": "a b",
                                           "response": "well a b"}]}}}
    out = eval_bias(result)
    assert out["mc"]["position"]["n"] == 3 and out["gen"]["boilerplate"]["n"] == 1


def test_token_loss_shift_finds_the_tokens_training_lowered(tiny_model_dir):
    """Fine-tune on a planted phrase: its tokens must top the loss-drop ranking."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dtmerge.evaluate.scoring import encode_record

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = ALPACA_CHAT_TEMPLATE
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rec = lambda q, a: {"prompt": [{"role": "user", "content": q}],
                        "completion": [{"role": "assistant", "content": a}]}
    train = [rec("where is alice born", "zzqx alice")] + [rec(f"name {i}", "the city is paris")
                                                          for i in range(6)]
    opt = torch.optim.AdamW(tuned.parameters(), lr=1e-2)
    ids, start = encode_record(tok, train[0])
    x = torch.tensor([ids])
    labels = x.clone()
    labels[0, :start] = -100
    for _ in range(20):
        tuned(input_ids=x, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    out = token_loss_shift(base, {"sft": tuned, "lazy": lambda: tuned}, train, tok, top_k=5)
    assert set(out["models"]) == {"sft", "lazy"}
    top = out["models"]["sft"]["top_tokens"]
    drops = [t["loss_drop"] for t in top]
    assert drops == sorted(drops, reverse=True) and drops[0] > 1.0
    planted = set(tok(" zzqx alice", add_special_tokens=False)["input_ids"]) | \
        set(tok("zzqx alice", add_special_tokens=False)["input_ids"])
    assert top[0]["id"] in planted
    assert all(t["rare"] == (t["count"] <= out["rare_max_count"]) for t in top)
    assert out["models"]["sft"]["rare_share_of_top"] > 0.5  # the planted tokens are rare
