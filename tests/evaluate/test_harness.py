import json

import pytest
import torch

from dtmerge.config import EvalConfig
from dtmerge.errors import ConfigError, ModelError
from dtmerge.evaluate.harness import evaluate_model


@pytest.fixture(scope="module")
def lora_pair(tmp_path_factory, tiny_model_dir):
    """A LoRA adapter with non-zero updates, and the same model with the adapter merged in."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"],
                                            init_lora_weights=False))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    peft.save_pretrained(root / "adapter")
    tok.save_pretrained(root / "adapter")
    peft.merge_and_unload().save_pretrained(root / "merged")
    tok.save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


def _cfg(task_dir, **kw):
    kw.setdefault("tasks", ["tiny_mc", "tiny_gen"])
    return EvalConfig(include_path=[str(task_dir)], batch_size=8, **kw)


def test_result_follows_the_eval_contract(tmp_path, tiny_model_dir, task_dir):
    torch.set_num_threads(1)
    out = tmp_path / "eval" / "base.json"
    res = evaluate_model(tiny_model_dir, _cfg(task_dir, limit=8), out, "base")
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert res["variant"] == "base" and res["adapter"] is None
    s = res["settings"]
    assert s["limit"] == 8 and s["apply_chat_template"] is False
    assert s["task_versions"] == {"tiny_mc": 1.0, "tiny_gen": 2.0}
    assert s["lm_eval_version"]
    mc = res["tasks"]["tiny_mc"]
    assert mc["metric"] == "acc" and mc["category"] == "knowledge" and mc["n"] == 8
    assert [it["doc_id"] for it in mc["items"]] == list(range(8))
    for it in mc["items"]:
        assert it["pred"] in range(4) and it["gold"] in range(4)
        assert it["score"] == float(it["pred"] == it["gold"])
    assert mc["score"] == pytest.approx(sum(i["score"] for i in mc["items"]) / 8)
    gen = res["tasks"]["tiny_gen"]
    assert gen["metric"] == "exact_match" and gen["category"] == "instruction"
    assert all(isinstance(it["response"], str) for it in gen["items"])
    assert [it["gold"] for it in gen["items"]] == ["paris", "london", "rome", "berlin"]


def test_lm_evals_machine_report_is_skipped_and_restored(tmp_path, tiny_model_dir, task_dir,
                                                         monkeypatch):
    """lm-eval's simple_evaluate would run torch's collect_env (a dozen subprocesses, ~1 s) on
    every call; evaluate_model skips it and leaves torch's function as it found it."""
    import torch.utils.collect_env as collect_env

    calls = []
    monkeypatch.setattr(collect_env, "get_env_info", lambda: calls.append(1))
    original = collect_env.get_pretty_env_info
    res = evaluate_model(tiny_model_dir, _cfg(task_dir, tasks=["tiny_mc"], limit=2),
                         tmp_path / "base.json", "base")
    assert res["tasks"]["tiny_mc"]["n"] == 2 and res["settings"]["lm_eval_version"]
    assert calls == []
    assert collect_env.get_pretty_env_info is original


def test_lora_adapter_unmerged_scores_like_the_merged_model(tmp_path, tiny_model_dir, task_dir,
                                                            lora_pair):
    adapter, merged = lora_pair
    cfg = _cfg(task_dir, tasks=["tiny_mc"])
    via_adapter = evaluate_model(adapter, cfg, tmp_path / "a.json", "sub_0",
                                 base_model=tiny_model_dir)
    via_merged = evaluate_model(merged, cfg, tmp_path / "m.json", "merged")
    assert via_adapter["adapter"] == str(adapter)
    assert via_adapter["base_model"] == str(tiny_model_dir)
    a, m = via_adapter["tasks"]["tiny_mc"]["items"], via_merged["tasks"]["tiny_mc"]["items"]
    assert [i["pred"] for i in a] == [i["pred"] for i in m]
    for x, y in zip(a, m):
        assert x["logprobs"] == pytest.approx(y["logprobs"], abs=2e-3)
    base = evaluate_model(tiny_model_dir, cfg, tmp_path / "b.json", "base")
    # the adapter must actually be applied: its choice log-likelihoods differ from the base's
    b = base["tasks"]["tiny_mc"]["items"]
    assert max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x["logprobs"], y["logprobs"])) > 1e-2


def test_adapter_without_base_and_empty_tasks_are_user_errors(tmp_path, task_dir, lora_pair):
    adapter, _ = lora_pair
    with pytest.raises(ModelError, match="base_model"):
        evaluate_model(adapter, _cfg(task_dir), tmp_path / "x.json", "sub_0")
    with pytest.raises(ConfigError, match="eval.tasks is empty"):
        evaluate_model(adapter, EvalConfig(), tmp_path / "x.json", "sub_0", base_model="x")
