"""`dtm run` from a tiny base model and Alpaca data to a merged model and its report."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tiny import write_alpaca, write_mc_task
from dtmerge.cli.main import main


def expected_lora_average(base_dir, adapter_dirs):
    """W0 + mean_k(scale_k * B_k @ A_k), computed here independently of dtmerge."""
    base = load_file(base_dir / "model.safetensors")
    deltas = {}
    for d in adapter_dirs:
        conf = json.loads((d / "adapter_config.json").read_text())
        scale = conf["lora_alpha"] / conf["r"]
        ad = load_file(d / "adapter_model.safetensors")
        for key, a in ad.items():
            if ".lora_A." not in key:
                continue
            b = ad[key.replace(".lora_A.", ".lora_B.")]
            name = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
            deltas.setdefault(name, []).append(scale * (b @ a))
    merged = dict(base)
    for name, ds in deltas.items():
        merged[name] = base[name] + torch.stack(ds).mean(0)
    return merged, set(deltas)


@pytest.mark.slow
def test_dtm_run_k2_end_to_end(tmp_path, tiny_model_dir, capsys):
    torch.set_num_threads(1)
    data = write_alpaca(tmp_path / "data.jsonl", 40)
    cities = ["paris", "london", "rome", "berlin"]
    rows = [{"question": f"where is {name} born", "choices": cities, "answer": i % 4}
            for i, name in enumerate(["alice", "bob", "carol", "dave"] * 3)]
    tasks = write_mc_task(tmp_path / "tasks", "tiny_mc", rows)
    cfg = {
        "name": "e2e", "runs_dir": str(tmp_path / "runs"),
        "model": {"path": str(tiny_model_dir)},
        "data": {"path": str(data), "eval_fraction": 0.1},
        "disperse": {"strategy": "random", "num_portions": 2},
        "train": {"method": "lora", "max_steps": 3, "batch_size": 4, "grad_accum": 1,
                  "learning_rate": 5e-3, "warmup_steps": 0, "max_length": 256,
                  "lora": {"r": 4, "alpha": 8}},
        "eval": {"tasks": ["tiny_mc"], "include_path": [str(tasks)], "batch_size": 8,
                 "variants": ["base", "sft", "dtm", "submodels"]},
    }
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(cfg_path)]) == 0

    run = tmp_path / "runs" / "e2e"
    for k in range(2):
        assert (run / "data" / f"portion_{k}.jsonl").exists()
        assert (run / "models" / f"sub_{k}" / "adapter_config.json").exists()
    assert (run / "models" / "sft").exists()

    from transformers import AutoModelForCausalLM

    merged_model = AutoModelForCausalLM.from_pretrained(run / "models" / "dtm")
    expected, touched = expected_lora_average(
        tiny_model_dir, [run / "models" / "sub_0", run / "models" / "sub_1"])
    assert touched, "the adapters changed no weight"
    state = merged_model.state_dict()
    for name, want in expected.items():
        torch.testing.assert_close(state[name], want, atol=1e-6, rtol=0, msg=name)

    for variant in ("base", "sft", "dtm", "sub_0", "sub_1"):
        result = json.loads((run / "eval" / f"{variant}.json").read_text())
        assert result["tasks"]["tiny_mc"]["n"] == 12
    report = (run / "report" / "report.md").read_text()
    for row in ("base", "sft", "dtm"):
        assert row in report
    assert (run / "report" / "report.html").exists()

    # A rerun does no work twice.
    capsys.readouterr()
    assert main(["run", str(cfg_path)]) == 0
    out = capsys.readouterr().out
    assert "[train]" not in out and out.count("[skip]") >= 5
