import json
import os
import shutil

import pytest
import torch

from dtmerge.config import RunConfig
from dtmerge.errors import ConfigError
from dtmerge.evaluate.stage import evaluate_stage, plan_variants
from dtmerge.merge.stage import build_interpolations
from dtmerge.rundir import RunDir


def _perturbed_copy(src, dst, seed, scale=0.5):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p) * p.std())
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


def _adapter(src, dst, seed):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(src),
                          LoraConfig(r=2, target_modules=["up_proj"], init_lora_weights=False))
    peft.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)


def fake_interpolate(base, model, t, out_dir):
    """Stand-in for dtmerge.merge.interpolate: base + t * (model - base), full weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    b = AutoModelForCausalLM.from_pretrained(base)
    m = AutoModelForCausalLM.from_pretrained(model)
    sd = m.state_dict()
    with torch.no_grad():
        for k, v in b.state_dict().items():
            v.add_(t * (sd[k] - v))
    b.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model).save_pretrained(out_dir)
    return {}


@pytest.fixture
def run_setup(tmp_path, tiny_model_dir, task_dir, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr("dtmerge.merge.stage.interpolate", fake_interpolate)
    cfg = RunConfig.model_validate({
        "name": "r", "runs_dir": str(tmp_path / "runs"),
        "model": {"path": str(tiny_model_dir)}, "data": {"path": "unused.jsonl"},
        "disperse": {"num_portions": 2},
        "eval": {"tasks": ["knowledge", "tiny_gen"], "include_path": [str(task_dir)],
                 "variants": ["base", "sft", "dtm", "submodels", "interpolation"],
                 "interpolation": [0.5], "batch_size": 8},
    })
    run = RunDir(cfg.run_dir)
    _perturbed_copy(tiny_model_dir, run.model("sft"), 1)
    _perturbed_copy(tiny_model_dir, run.model("dtm"), 2)
    _adapter(tiny_model_dir, run.model("sub_0"), 3)
    _adapter(tiny_model_dir, run.model("sub_1"), 4)
    recs = [{"prompt": [{"role": "user", "content": f"where is {p} born"}],
             "completion": [{"role": "assistant", "content": f"{p} is born in {c}"}]}
            for p, c in [("alice", "paris"), ("bob", "rome"), ("carol", "london")]]
    run.data_dir.mkdir(parents=True, exist_ok=True)
    run.all_data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return cfg, run


@pytest.mark.slow
def test_every_variant_is_scored_once_and_reruns_skip(run_setup):
    cfg, run = run_setup
    logs = []
    build_interpolations(cfg, run, log=logs.append)  # the merge stage's part of the line
    out = evaluate_stage(cfg, run, log=logs.append)
    expected = ["base", "sft", "dtm", "sub_0", "sub_1", "interp_0.5"]
    assert out["variants"] == expected and out["ran"] == expected
    for name in expected:
        res = json.loads(run.eval_file(name).read_text())
        assert res["variant"] == name
        assert set(res["tasks"]) == {"tiny_mc", "tiny_gen"}
    sub = json.loads(run.eval_file("sub_0").read_text())
    assert sub["adapter"] == str(run.model("sub_0")) and sub["base_model"] == cfg.model.path
    assert run.job("interp:0.5")["status"] == "done"
    # identical settings recorded for every variant
    settings = {json.dumps(json.loads(run.eval_file(n).read_text())["settings"]) for n in expected}
    assert len(settings) == 1
    bias = json.loads((run.root / "eval" / "bias.json").read_text())
    assert set(bias["variants"]) == set(expected)
    assert "position" in bias["variants"]["base"]["tiny_mc"]
    assert "boilerplate" in bias["variants"]["base"]["tiny_gen"]
    assert set(bias["tokens"]["models"]) == {"sft", "dtm", "sub_0", "sub_1"}

    again = evaluate_stage(cfg, run, log=logs.append)
    assert again["ran"] == []
    # a changed model is re-evaluated (and so is the interpolation built from it)
    shutil.rmtree(run.model("sft"))
    _perturbed_copy(cfg.model.path, run.model("sft"), 9)
    build_interpolations(cfg, run, log=logs.append)
    third = evaluate_stage(cfg, run, log=logs.append)
    assert third["ran"] == ["sft", "interp_0.5"]


def test_missing_models_are_skipped_and_unknown_variants_rejected(run_setup):
    cfg, run = run_setup
    shutil.rmtree(run.model("dtm"))
    logs = []
    names = [v.name for v in plan_variants(cfg, run, logs.append)]
    assert "dtm" not in names and any("dtm" in m for m in logs)
    bad = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"variants": ["dtmm"]})})
    with pytest.raises(ConfigError, match="dtmm"):
        plan_variants(bad, run)


def test_no_tasks_means_nothing_to_score(run_setup):
    cfg, run = run_setup
    empty = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"tasks": []})})
    logs = []
    assert evaluate_stage(empty, run, log=logs.append) == {"variants": [], "ran": []}
    assert "nothing to score" in logs[0]


def test_best_variants_are_the_kept_best_models_of_full_data_jobs(run_setup):
    cfg, run = run_setup
    best = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"variants": ["best"]})})
    logs = []
    assert plan_variants(best, run, logs.append) == [] and "no models/<job>_best" in logs[0]
    for name in ("sft_best", "sub_0_best"):
        shutil.copytree(run.model("sft"), run.model(name))
    assert [v.name for v in plan_variants(best, run)] == ["sft_best"]


@pytest.mark.slow
def test_scores_are_identical_whatever_the_executor(run_setup):
    """The same variants scored in this process, in a 2-process pool and as Ray tasks."""
    pytest.importorskip("ray", reason="Ray is in the test extra")
    import ray

    cfg, run = run_setup
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={
        "variants": ["base", "sft", "submodels"], "tasks": ["knowledge"]})})
    placements = {"local": {}, "pool": {"parallel_jobs": 2}, "ray": {"executor": "ray"}}
    scores, fingerprints = {}, {}
    for name, update in placements.items():
        shutil.rmtree(run.root / "eval", ignore_errors=True)
        run.manifest_path.unlink(missing_ok=True)
        placed = cfg.model_copy(update={"eval": cfg.eval.model_copy(update=update)})
        if name == "ray":
            ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False)
        try:
            out = evaluate_stage(placed, run, log=lambda m: None)
        finally:
            if name == "ray":
                ray.shutdown()
        assert out["ran"] == ["base", "sft", "sub_0", "sub_1"]
        scores[name] = {v: json.loads(run.eval_file(v).read_text())["tasks"] for v in out["ran"]}
        fingerprints[name] = {v: run.job(f"eval:{v}")["fingerprint"] for v in out["ran"]}
    assert scores["pool"] == scores["local"] and scores["ray"] == scores["local"]
    # where a job runs is not part of what it scores: a rerun elsewhere skips it
    assert fingerprints["pool"] == fingerprints["local"] == fingerprints["ray"]


def test_identical_models_are_scored_once_and_share_the_scores(run_setup):
    """wise_ft at t=0.5 is interp_0.5: a variant with byte-identical weights and the same
    settings as another takes its scores instead of a second evaluation, even when the two
    directories were written at different times with different provenance records."""
    cfg, run = run_setup
    shutil.rmtree(run.model("dtm"))
    shutil.copytree(run.model("sft"), run.model("dtm"))  # same weights under another name
    (run.model("sft") / "merge_record.json").write_text('{"seconds": 1.0}')
    (run.model("dtm") / "merge_record.json").write_text('{"seconds": 2.0}')
    os.utime(run.model("dtm") / "model.safetensors", (1, 1))  # another mtime
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"variants": ["base", "sft", "dtm"]})})
    logs = []
    out = evaluate_stage(cfg, run, log=logs.append)
    assert out["variants"] == ["base", "sft", "dtm"] and out["ran"] == ["base", "sft"]
    sft, dtm = (json.loads(run.eval_file(n).read_text()) for n in ("sft", "dtm"))
    assert dtm["variant"] == "dtm" and dtm["same_model_as"] == "sft"
    assert dtm["tasks"] == sft["tasks"]
    assert run.job("eval:dtm")["status"] == "done" and run.job("eval:dtm")["same_model_as"] == "sft"
    assert any("same weights as sft" in line for line in logs)
    assert evaluate_stage(cfg, run, log=logs.append)["ran"] == []  # a rerun skips both
    # different weights of the same size are scored on their own
    shutil.rmtree(run.model("dtm"))
    _perturbed_copy(cfg.model.path, run.model("dtm"), 5)
    third = evaluate_stage(cfg, run, log=logs.append)
    assert third["ran"] == ["dtm"] and "same_model_as" not in json.loads(run.eval_file("dtm").read_text())


def test_an_ensemble_costs_one_scoring_per_member(tmp_path):
    from dtmerge.evaluate.ensemble import write_ensemble_dir
    from dtmerge.evaluate.stage import scoring_cost

    plain = tmp_path / "plain"
    plain.mkdir()
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    write_ensemble_dir(ensemble, [str(tmp_path / f"sub_{k}") for k in range(3)], str(plain))
    assert scoring_cost(str(plain)) == 1 and scoring_cost(str(ensemble)) == 3
    assert scoring_cost("org/hub-model") == 1  # not a local directory
