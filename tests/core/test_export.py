"""`dtm export`: a run's variant (here a LoRA adapter, as the monitor's sft_best) becomes a
standalone model that loads with transformers alone and computes what base + adapter does."""

import torch
import yaml

from dtmerge.cli.main import main


def test_export_merges_a_lora_variant_into_a_standalone_model(tmp_path, tiny_model_dir, capsys):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    run = tmp_path / "runs" / "r"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"name": "r", "model": {"path": str(tiny_model_dir), "dtype": "float32"},
         "data": {"path": "unused.jsonl"}}))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"],
                                           task_type="CAUSAL_LM", init_lora_weights=False))
    peft.save_pretrained(run / "models" / "sft_best")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run / "models" / "sft_best")

    out = tmp_path / "shipped"
    assert main(["export", str(run), "sft_best", "--out", str(out)]) == 0
    assert not (out / "adapter_config.json").exists() and (out / "config.json").exists()
    shipped = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 9, 3]])
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                          run / "models" / "sft_best")
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
        torch.testing.assert_close(shipped(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(shipped(ids).logits, plain)  # the adapter did change something
    assert (out / "tokenizer_config.json").exists()

    assert main(["export", str(run), "sft_best", "--out", str(out)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(run), "nope", "--to", str(tmp_path / "x")]) == 2  # old spelling
    assert "available: sft_best" in capsys.readouterr().err
