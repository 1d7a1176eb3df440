"""MergeOptions: one frozen object for the engine, the update scale (the frontier's lambda)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dtmerge.errors import MergeError
from dtmerge.merge import MergeOptions, merge_models

from merge_zoo import load_dir


def test_options_are_frozen_and_checked_once():
    opts = MergeOptions(method="ties", weights=[1, 2], params={"density": 0.5})
    assert opts.weights == (1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.method = "linear"
    with pytest.raises(TypeError):
        opts.params["density"] = 0.9  # the params mapping is read-only too
    with pytest.raises(MergeError, match="3 weights given for 2 models"):
        MergeOptions(weights=[1, 1, 1]).resolved_weights(2)
    with pytest.raises(MergeError, match="unknown option.*densty"):
        MergeOptions.of(None, {"densty": 0.5})


@pytest.mark.parametrize("method", ["linear", "task_arithmetic"])
def test_update_scale_extrapolates_the_merged_update(zoo, tmp_path, method):
    merge_models(zoo["base"], zoo["full"], tmp_path / "one", method=method)
    opts = MergeOptions(method=method, update_scale=1.5)
    rec = merge_models(zoo["base"], zoo["full"], tmp_path / "scaled", opts)
    assert rec["update_scale"] == 1.5
    base, one, scaled = (load_dir(p) for p in (zoo["base"], tmp_path / "one", tmp_path / "scaled"))
    for name, tensor in scaled.items():
        expected = base[name].double() + 1.5 * (one[name].double() - base[name].double())
        assert torch.allclose(tensor.double(), expected, atol=1e-6), name


@pytest.mark.parametrize("method,which", [("linear", "full"), ("ties", "full"),
                                          ("dare_linear", "full"), ("task_arithmetic", "lora"),
                                          ("linear", "lora")])
def test_one_read_for_several_scales_equals_separate_merges(zoo, tmp_path, method, which):
    from dtmerge.merge import merge_scaled

    scales = {tmp_path / "s1": 1.0, tmp_path / "s05": 0.5, tmp_path / "s2": 2.0}
    opts = MergeOptions(method=method, block_elements=2000)
    records = merge_scaled(zoo["base"], zoo[which], scales, opts)
    assert records[tmp_path / "s2"]["update_scale"] == 2.0
    for out, scale in scales.items():
        alone = tmp_path / f"alone_{out.name}"
        merge_models(zoo["base"], zoo[which], alone, opts, update_scale=scale)
        mine, ref = load_dir(out), load_dir(alone)
        assert mine.keys() == ref.keys()
        for name in ref:
            assert torch.equal(mine[name], ref[name]), (out.name, name)
