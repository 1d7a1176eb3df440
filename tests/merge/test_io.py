"""Shards, tied embeddings, up-front validation and the all-or-nothing output directory."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dtmerge.errors import MergeError
from dtmerge.merge import merge_models

from merge_zoo import load_dir, make_base, make_finetuned, make_lora, merged_full, read_json


def test_sharded_inputs_and_outputs_load_in_transformers(zoo, tmp_path):
    from transformers import AutoModelForCausalLM

    sharded = make_finetuned(zoo["base"], tmp_path / "sharded", seed=3, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").exists()
    merge_models(zoo["base"], [sharded, zoo["full"][0]], tmp_path / "out", shard_size="30KB")
    out = tmp_path / "out"
    index = read_json(out / "model.safetensors.index.json")
    assert len(set(index["weight_map"].values())) > 1
    for name in ("config.json", "generation_config.json", "merge_record.json"):
        assert (out / name).exists()
    a, b = load_dir(sharded), load_dir(zoo["full"][0])
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    for name, tensor in model.state_dict().items():
        assert torch.allclose(tensor, (a[name] + b[name]) / 2, atol=1e-6), name


def test_tied_embeddings(tmp_path):
    from transformers import AutoModelForCausalLM

    base = make_base(tmp_path / "base", tie_word_embeddings=True)
    assert "lm_head.weight" not in load_dir(base)
    models = [make_finetuned(base, tmp_path / f"m{k}", seed=k) for k in range(2)]
    adapter = make_lora(base, tmp_path / "lora", seed=4)
    merge_models(base, [*models, adapter], tmp_path / "out")
    out = load_dir(tmp_path / "out")
    assert "lm_head.weight" not in out
    ref = [load_dir(m) for m in models] + [merged_full(base, adapter)]
    emb = "model.embed_tokens.weight"
    assert torch.allclose(out[emb], sum(r[emb] for r in ref) / 3, atol=1e-6)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def _edit_tensor(model_dir, name, new):
    path = model_dir / "model.safetensors"
    tensors = load_file(str(path))
    tensors[name] = new(tensors[name])
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_shape_mismatch_names_the_tensor(zoo, tmp_path):
    bad = make_finetuned(zoo["base"], tmp_path / "bad", seed=1)
    name = "model.layers.1.mlp.down_proj.weight"
    _edit_tensor(bad, name, lambda t: t[:, :-1].contiguous())
    with pytest.raises(MergeError, match=rf"{name}.*\[32, 47\].*\[32, 48\]"):
        merge_models(zoo["base"], [zoo["full"][0], bad], tmp_path / "out")


def test_dtype_and_vocab_mismatch(zoo, tmp_path):
    bad = make_finetuned(zoo["base"], tmp_path / "bf16", seed=1)
    _edit_tensor(bad, "model.norm.weight", lambda t: t.to(torch.bfloat16))
    with pytest.raises(MergeError, match="model.norm.weight.*bfloat16"):
        merge_models(zoo["base"], [bad], tmp_path / "out")
    other = make_base(tmp_path / "vocab", vocab_size=80)
    with pytest.raises(MergeError, match="vocabulary sizes differ.*64.*80"):
        merge_models(zoo["base"], [other], tmp_path / "out")


def test_adapter_for_another_base_is_rejected(zoo, tmp_path):
    other = make_base(tmp_path / "wide", intermediate_size=40)
    adapter = make_lora(other, tmp_path / "lora", seed=1)
    with pytest.raises(MergeError, match="lora.*mlp.*base tensor is"):
        merge_models(zoo["base"], [adapter], tmp_path / "out")


def test_output_untouched_on_failure(zoo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous merge")
    # fisher without data fails after the temporary output directory was created
    with pytest.raises(MergeError, match="fisher_data"):
        merge_models(zoo["base"], zoo["full"], out, method="fisher")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial dirs left


@pytest.mark.parametrize("method", ["linear", "ties", "ties_fused"])
def test_nan_input_is_caught(zoo, tmp_path, method, monkeypatch):
    if method == "ties_fused":  # through the compiled kernel (it keeps NaN, as hardshrink does)
        from dtmerge.merge.methods import kernels
        monkeypatch.setattr(kernels, "MIN_VALUES", 0)
        method = "ties"
    bad = make_finetuned(zoo["base"], tmp_path / "nan", seed=1)
    _edit_tensor(bad, "model.norm.weight", lambda t: t * float("nan"))
    with pytest.raises(MergeError, match="model.norm.weight.*NaN"):
        merge_models(zoo["base"], [bad, zoo["full"][0]], tmp_path / "out", method=method)
    assert not (tmp_path / "out").exists()


def test_tokenizer_comes_from_first_model(zoo, tmp_path):
    sub = make_finetuned(zoo["base"], tmp_path / "sub", seed=2)
    (sub / "tokenizer_config.json").write_text(json.dumps({"chat_template": "alpaca"}))
    merge_models(zoo["base"], [sub], tmp_path / "out")
    assert read_json(tmp_path / "out" / "tokenizer_config.json")["chat_template"] == "alpaca"


def test_bf16_models_are_merged_in_fp32_and_saved_in_bf16(tmp_path):
    from transformers import LlamaForCausalLM

    base = make_base(tmp_path / "base")
    paths = []
    for k in range(2):
        m = LlamaForCausalLM.from_pretrained(make_finetuned(base, tmp_path / f"f{k}", seed=k),
                                             dtype=torch.bfloat16)
        m.save_pretrained(tmp_path / f"b{k}")
        paths.append(tmp_path / f"b{k}")
    LlamaForCausalLM.from_pretrained(base, dtype=torch.bfloat16).save_pretrained(tmp_path / "bb")
    merge_models(tmp_path / "bb", paths, tmp_path / "out", method="task_arithmetic",
                 params={"normalize": True})
    out, bb = load_dir(tmp_path / "out"), load_dir(tmp_path / "bb")
    a, b = (load_dir(p) for p in paths)
    for name, tensor in out.items():
        assert tensor.dtype == torch.bfloat16
        ref = bb[name].float() + ((a[name].float() - bb[name].float())
                                   + (b[name].float() - bb[name].float())) / 2
        assert torch.equal(tensor, ref.to(torch.bfloat16)), name
