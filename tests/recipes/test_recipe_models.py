"""Recipes that train or combine models: l2/ewc through the trainer, uniform_soup, ensemble,
lora_moe (tiny models, CPU)."""

import json
import math

import pytest
import torch

from tiny import build_tiny_model_dir, write_mc_task
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.stages import build_stage, prepare_stage, train_stage


def _quiet(_):
    pass


def prepare_and_train(cfg, run, log=_quiet) -> dict:
    prepare_stage(cfg, run, log=log)
    return train_stage(cfg, run, log=log)


def _update_sq_norm(adapter_dir):
    from safetensors.torch import load_file

    conf = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = conf["lora_alpha"] / conf["r"]
    ad = load_file(adapter_dir / "adapter_model.safetensors")
    return sum((scale * ad[k.replace("lora_A", "lora_B")] @ a).pow(2).sum().item()
               for k, a in ad.items() if "lora_A" in k)


def test_penalised_training_keeps_the_update_smaller(run_with_data, text_file):
    torch.set_num_threads(1)
    cfg, run = run_with_data([{"name": "sft"}, {"name": "l2", "coef": 50.0},
                              {"name": "ewc", "coef": 50.0, "text": str(text_file), "docs": 3}],
                             max_steps=4, learning_rate=5e-2)
    prepare_and_train(cfg, run)
    sft, l2, ewc = (_update_sq_norm(run.model(n)) for n in ("sft", "l2", "ewc"))
    assert 0 < l2 < sft and 0 < ewc < sft
    fps = {run.job(f"train:{n}")["fingerprint"] for n in ("sft", "l2", "ewc")}
    assert len(fps) == 3  # the penalty is part of each job's fingerprint
    cfg2, _ = run_with_data([{"name": "sft"}, {"name": "l2", "coef": 5.0},
                             {"name": "ewc", "coef": 50.0, "text": str(text_file), "docs": 3}],
                            max_steps=4, learning_rate=5e-2)
    logs = []
    assert prepare_and_train(cfg2, run, log=logs.append)["trained"] == ["l2"]  # only the changed one
    assert any("[redo] train:l2" in m for m in logs)


def test_uniform_soup_is_sft_plus_k_minus_1_models_on_all_data_with_distinct_seeds(run_with_data):
    from safetensors.torch import load_file

    from dtmerge.merge.engine import merge_models

    torch.set_num_threads(1)
    cfg, run = run_with_data([{"name": "uniform_soup", "num_models": 3}], seed=3)
    # no sft recipe in this run, so no interpolation line to build
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"variants": ["base"]})})
    (soup,) = resolve_recipes(cfg)
    jobs = soup.jobs(run)
    assert [j.data for j in jobs] == [run.all_data] * 3
    assert jobs[0].name == "sft" and jobs[0].spec is None  # SFT itself, trained once
    seeds = soup.seeds()
    assert seeds[0] == 3 and len(set(seeds)) == 3
    assert [j.spec["seed"] for j in jobs[1:]] == seeds[1:]
    prepare_and_train(cfg, run)
    build_stage(cfg, run, log=_quiet)
    a, b = (load_file(j.out / "adapter_model.safetensors") for j in jobs[:2])
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different seeds, different models
    # the soup is the uniform average of SFT and the two others
    merge_models(soup.base_model(), [j.out for j in jobs], run.root / "check", method="linear",
                 log=_quiet)
    made, check = (load_file(d / "model.safetensors") for d in (run.model("uniform_soup"),
                                                                  run.root / "check"))
    assert all(torch.equal(made[k], check[k]) for k in made)
    described = json.loads((run.root / "recipes.json").read_text())["uniform_soup"]
    assert described["seeds"] == seeds
    assert described["train_jobs"] == ["sft", "uniform_soup_1", "uniform_soup_2"]


def test_ensemble_is_the_mean_of_the_members_probabilities(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dtmerge.evaluate.ensemble import EnsembleLM

    torch.set_num_threads(1)
    dirs = [build_tiny_model_dir(tmp_path / f"m{i}", seed=i) for i in range(3)]
    models = [AutoModelForCausalLM.from_pretrained(d).eval() for d in dirs]
    tok = AutoTokenizer.from_pretrained(dirs[0])
    lm = EnsembleLM(models, tok)
    context, cont = tok.encode("where is alice"), tok.encode(" born in rome")
    (logp, _), = lm._loglikelihood_tokens([(("", ""), context, cont)])
    ids = torch.tensor([context + cont])
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(input_ids=ids).logits[0], -1) for m in models]).mean(0)
    want = sum(math.log(probs[len(context) - 1 + i, t].item()) for i, t in enumerate(cont))
    assert logp == pytest.approx(want, rel=1e-5)
    out = lm.generate_until([type("R", (), {"args": ("where is", {"until": ["\n"], "max_gen_toks": 3})})()])
    assert isinstance(out[0], str)


def test_lora_moe_router_sums_to_one_and_trains_saves_reloads_scores(run_with_data, tmp_path):
    from dtmerge.evaluate.harness import evaluate_model
    from dtmerge.models.lora_moe import LoraMoeLinear, load_lora_moe

    torch.set_num_threads(1)
    cfg, run = run_with_data([{"name": "lora_moe", "experts": 3, "r": 2}], max_steps=3,
                             learning_rate=5e-2)
    prepare_and_train(cfg, run)
    out = run.model("lora_moe")
    model = load_lora_moe(out)
    layers = [m for m in model.modules() if isinstance(m, LoraMoeLinear)]
    assert len(layers) == 2 * 3  # gate, up, down in each of 2 layers
    x = torch.randn(2, 5, layers[0].base.in_features)
    weights = layers[0].router_weights(x)
    assert weights.shape == (2, 5, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    assert any(m.lora_B.abs().sum() > 0 for m in layers)  # the experts trained
    rows = [{"question": f"where is {n} born", "choices": ["paris", "rome"], "answer": 0}
            for n in ("alice", "bob")]
    tasks = write_mc_task(tmp_path / "tasks", "moe_mc", rows)
    ecfg = cfg.eval.model_copy(update={"tasks": ["moe_mc"], "include_path": [str(tasks)],
                                       "batch_size": 2, "device": "cpu"})
    result = evaluate_model(out, ecfg, tmp_path / "moe.json", "lora_moe")
    assert result["tasks"]["moe_mc"]["n"] == 2


def test_a_one_member_ensemble_scores_like_lm_evals_own_model(tiny_model_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dtmerge.evaluate.ensemble import EnsembleLM

    torch.set_num_threads(1)
    hf = HFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=1, dtype="float32")
    ours = EnsembleLM([AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()],
                      AutoTokenizer.from_pretrained(tiny_model_dir))

    def req(kind, args):
        return Instance(request_type=kind, doc={}, arguments=args, idx=0)

    pairs = [req("loglikelihood", ("where is alice born", " in rome")),
             req("loglikelihood", ("", "alice is born"))]
    for (a, ga), (b, gb) in zip(hf.loglikelihood(pairs, disable_tqdm=True),
                                ours.loglikelihood(pairs, disable_tqdm=True)):
        assert b == pytest.approx(a, rel=1e-4) and ga == gb
    rolling = [req("loglikelihood_rolling", ("the capital of paris is paris and bob works in london",))]
    assert ours.loglikelihood_rolling(rolling)[0] == pytest.approx(
        hf.loglikelihood_rolling(rolling, disable_tqdm=True)[0], rel=1e-4)


def test_a_one_member_ensemble_generates_like_lm_evals_own_model(tiny_model_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dtmerge.evaluate.ensemble import EnsembleLM

    torch.set_num_threads(1)
    hf = HFLM(pretrained=str(tiny_model_dir), device="cpu", batch_size=1, dtype="float32")
    ours = EnsembleLM([AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()],
                      AutoTokenizer.from_pretrained(tiny_model_dir))
    reqs = [Instance(request_type="generate_until", doc={}, idx=0, arguments=(
        c, {"until": ["paris"], "max_gen_toks": 12, "do_sample": False}))
        for c in ["where is alice born", "bob works in"]]
    assert ours.generate_until(reqs) == hf.generate_until(reqs, disable_tqdm=True)
