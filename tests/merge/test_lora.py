"""LoRA adapters are merged exactly: the same weights PEFT's merge_and_unload produces."""

from __future__ import annotations

import json

import pytest
import torch

from dtmerge.errors import MergeError
from dtmerge.merge import merge_models

from merge_zoo import load_dir, make_lora, merged_full

TOL = 1e-6


def _assert_same(out: dict, ref: dict):
    assert set(out) == set(ref)
    for name in out:
        assert torch.allclose(out[name], ref[name], atol=TOL, rtol=0), name


def test_single_adapter_equals_merge_and_unload(zoo, tmp_path):
    merge_models(zoo["base"], [zoo["lora"][0]], tmp_path / "out")
    _assert_same(load_dir(tmp_path / "out"), merged_full(zoo["base"], zoo["lora"][0]))


def test_rank_mismatch_average_is_exact(zoo, tmp_path):
    """Adapters of rank 4, 4 and 8 average to the mean of their merged full models."""
    merge_models(zoo["base"], zoo["lora"], tmp_path / "out", weights=[1, 2, 1])
    refs = [merged_full(zoo["base"], a) for a in zoo["lora"]]
    expected = {n: (refs[0][n] + 2 * refs[1][n] + refs[2][n]) / 4 for n in refs[0]}
    _assert_same(load_dir(tmp_path / "out"), expected)


def test_mixed_full_and_lora(zoo, tmp_path):
    merge_models(zoo["base"], [zoo["full"][0], zoo["lora"][1]], tmp_path / "out")
    full = load_dir(zoo["full"][0])
    lora = merged_full(zoo["base"], zoo["lora"][1])
    _assert_same(load_dir(tmp_path / "out"), {n: (full[n] + lora[n]) / 2 for n in full})


def test_rslora_and_rank_alpha_patterns(zoo, tmp_path):
    patterned = make_lora(zoo["base"], tmp_path / "pat", seed=5, r=4, alpha=8,
                          rank_pattern={"down_proj": 6}, alpha_pattern={"q_proj": 3})
    rs = make_lora(zoo["base"], tmp_path / "rs", seed=6, r=4, alpha=8, use_rslora=True)
    for adapter in (patterned, rs):
        merge_models(zoo["base"], [adapter], tmp_path / f"out_{adapter.name}")
        _assert_same(load_dir(tmp_path / f"out_{adapter.name}"),
                     merged_full(zoo["base"], adapter))


def test_as_adapter_is_exact(zoo, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    merge_models(zoo["base"], zoo["lora"], tmp_path / "full", weights=[0.5, 0.3, 0.2],
                 base_interpolation=0.8)
    merge_models(zoo["base"], zoo["lora"], tmp_path / "ad", weights=[0.5, 0.3, 0.2],
                 base_interpolation=0.8, as_adapter=True)
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert cfg["r"] in (8, 16) and cfg["peft_type"] == "LORA"
    model = LlamaForCausalLM.from_pretrained(zoo["base"], dtype=torch.float32)
    model = PeftModel.from_pretrained(model, tmp_path / "ad").merge_and_unload()
    _assert_same(load_dir(tmp_path / "full"), model.state_dict())


def test_lora_ab_average_is_the_paper_codes_variant(zoo, tmp_path):
    a, b = zoo["lora"][0], zoo["lora"][1]  # both rank 4
    merge_models(zoo["base"], [a, b], tmp_path / "ab", method="lora_ab_average")
    merge_models(zoo["base"], [a, b], tmp_path / "exact")
    from safetensors.torch import load_file

    fa, fb = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
    base, out = load_dir(zoo["base"]), load_dir(tmp_path / "ab")
    key = "base_model.model.model.layers.0.mlp.up_proj.lora_{}.weight"
    A = (fa[key.format("A")] + fb[key.format("A")]) / 2
    B = (fa[key.format("B")] + fb[key.format("B")]) / 2
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(out[name], base[name] + 2.0 * B @ A, atol=TOL)  # alpha/r = 8/4
    assert not torch.allclose(out[name], load_dir(tmp_path / "exact")[name], atol=1e-4)
    with pytest.raises(MergeError, match="rank 4 .* rank 8"):
        merge_models(zoo["base"], [a, zoo["lora"][2]], tmp_path / "bad", method="lora_ab_average")


@pytest.mark.parametrize("key,value,match", [
    ("use_dora", True, "DoRA"),
    ("modules_to_save", ["lm_head"], "modules_to_save"),
    ("bias", "all", "bias"),
])
def test_unmergeable_adapters_are_rejected(zoo, tmp_path, key, value, match):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(zoo["lora"][0], bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg[key] = value
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MergeError, match=match) as err:
        merge_models(zoo["base"], [bad], tmp_path / "out")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_as_adapter_with_per_module_ranks(zoo, tmp_path):
    """Adapters on different module sets: the concatenated ranks differ per module."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    q_only = make_lora(zoo["base"], tmp_path / "q", seed=9, r=2, alpha=5, target_modules=["q_proj"])
    inputs = [zoo["lora"][0], q_only]
    merge_models(zoo["base"], inputs, tmp_path / "ad", method="task_arithmetic",
                 params={"scaling": 0.6}, as_adapter=True)
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and set(cfg["rank_pattern"].values()) == {6}
    model = LlamaForCausalLM.from_pretrained(zoo["base"], dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, tmp_path / "ad").merge_and_unload().state_dict()
    base = load_dir(zoo["base"])
    refs = [merged_full(zoo["base"], a) for a in inputs]
    expected = {n: base[n] + 0.6 * 0.5 * ((refs[0][n] - base[n]) + (refs[1][n] - base[n]))
                for n in base}
    _assert_same(merged, expected)
