"""Every merge method against an independent reference computed in the test (fp32, 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtmerge.merge import interpolate, merge_models
from dtmerge.merge.methods.sparse import dare_keep, keep_threshold, mask_key

from merge_zoo import load_dir, read_json

TOL = 1e-6


def _close(a: torch.Tensor, b, tol=TOL):
    b = torch.as_tensor(np.asarray(b), dtype=torch.float32)
    assert a.shape == b.shape
    assert torch.allclose(a.float(), b, atol=tol, rtol=0), (a.float() - b).abs().max()


def _load(zoo, which):
    return load_dir(zoo["base"]), [load_dir(p) for p in zoo[which]]


def test_linear_weighted(zoo, tmp_path):
    weights = [0.2, 0.5, 0.3]
    rec = merge_models(zoo["base"], zoo["full"], tmp_path / "out", weights=weights)
    _, models = _load(zoo, "full")
    out = load_dir(tmp_path / "out")
    for name, tensor in out.items():
        ref = sum(w * m[name].numpy().astype(np.float64) for w, m in zip(weights, models))
        _close(tensor, ref / sum(weights))
    assert rec["weights"] == weights and rec["method"] == "linear"
    assert read_json(tmp_path / "out" / "merge_record.json")["models"][0]["hash"]


def test_task_arithmetic_scaling(zoo, tmp_path):
    merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="task_arithmetic",
                 weights=[1.0, 1.0, 0.5], params={"scaling": 0.7})
    base, models = _load(zoo, "full")
    for name, tensor in load_dir(tmp_path / "out").items():
        b = base[name].double().numpy()
        deltas = [m[name].double().numpy() - b for m in models]
        _close(tensor, b + 0.7 * (deltas[0] + deltas[1] + 0.5 * deltas[2]))


def _ties_reference(base, models, name, weights, density):
    """TIES from its paper, with numpy: top-k by magnitude via a full sort, elected sign as the
    sign of the weighted sum, mean weighted over the agreeing models."""
    b = base[name].double().numpy()
    pruned = []
    for m in models:
        d = m[name].double().numpy() - b
        flat = np.abs(d).reshape(-1)
        keep = int(density * flat.size)
        mask = np.zeros(flat.size, bool)
        mask[np.argsort(-flat, kind="stable")[:keep]] = True
        pruned.append(d * mask.reshape(d.shape))
    w = np.array(weights).reshape(-1, *[1] * b.ndim)
    weighted = np.stack(pruned) * w
    sign = np.where(weighted.sum(0) >= 0, 1.0, -1.0)
    agree = np.sign(weighted) == sign
    den = (agree * w).sum(0)
    return b + (weighted * agree).sum(0) / np.where(den == 0, 1, den)


@pytest.mark.parametrize("weights", [None, [0.5, 0.3, 0.2]])
def test_ties_matches_reference(zoo, tmp_path, weights):
    merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="ties", weights=weights,
                 params={"density": 0.4})
    base, models = _load(zoo, "full")
    w = weights or [1 / 3] * 3
    for name, tensor in load_dir(tmp_path / "out").items():
        _close(tensor, _ties_reference(base, models, name, w, 0.4))


@pytest.mark.parametrize("sign", ["total", "frequency"])
def test_ties_uniform_equals_peft_operator(zoo, tmp_path, sign):
    from peft.utils.merge_utils import ties

    merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="ties",
                 params={"density": 0.3, "majority_sign": sign})
    base, models = _load(zoo, "full")
    out = load_dir(tmp_path / "out")
    for name in ["model.layers.0.mlp.up_proj.weight", "model.embed_tokens.weight"]:
        deltas = [m[name] - base[name] for m in models]
        _close(out[name], base[name] + ties(deltas, torch.ones(3), 0.3, sign))


def _dare_masks(name, count, seed, density, shape):
    """The documented recipe: entry i of model k kept when the top 32 bits of the i-th output
    of SplitMix64 seeded with mask_key(seed, tensor, k) are below round(p * 2^32)."""
    n = int(np.prod(shape))
    return [dare_keep(mask_key(seed, name, k), 0, n, keep_threshold(density)).reshape(shape)
            for k in range(count)]


def _splitmix64(seed: int, count: int) -> list[int]:
    """SplitMix64 as published (Steele, Lea, Flood 2014), in Python integers."""
    out, state, mask = [], seed, (1 << 64) - 1
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def test_dare_keep_is_splitmix64_at_any_position():
    key, threshold = mask_key(7, "w", 1), keep_threshold(0.3)
    draws = _splitmix64(key, 3000)
    expected = np.array([d >> 32 < threshold for d in draws])
    assert np.array_equal(dare_keep(key, 0, 3000, threshold), expected)
    assert np.array_equal(dare_keep(key, 1234, 500, threshold), expected[1234:1734])
    assert abs(dare_keep(key, 0, 200_000, threshold).mean() - 0.3) < 0.005
    assert not np.array_equal(dare_keep(mask_key(7, "w", 2), 0, 3000, threshold), expected)


def test_dare_linear_reference_and_determinism(zoo, tmp_path):
    params = {"density": 0.6, "seed": 7}
    merge_models(zoo["base"], zoo["full"], tmp_path / "a", method="dare_linear", params=params)
    merge_models(zoo["base"], zoo["full"], tmp_path / "b", method="dare_linear", params=params)
    merge_models(zoo["base"], zoo["full"], tmp_path / "c", method="dare_linear",
                 params={"density": 0.6, "seed": 8})
    a, b, c = (load_dir(tmp_path / x) for x in "abc")
    assert all(torch.equal(a[n], b[n]) for n in a)  # same seed: bit-identical
    assert any(not torch.equal(a[n], c[n]) for n in a)  # another seed: another merge
    base, models = _load(zoo, "full")
    for name, tensor in a.items():
        bn = base[name].double().numpy()
        masks = _dare_masks(name, 3, 7, 0.6, bn.shape)
        ref = bn + sum((m[name].double().numpy() - bn) * mk / 0.6 / 3
                       for m, mk in zip(models, masks))
        _close(tensor, ref)


def test_dare_ties_drops_then_elects(zoo, tmp_path):
    merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="dare_ties",
                 params={"density": 0.5, "seed": 3})
    base, models = _load(zoo, "full")
    name = "model.layers.1.self_attn.o_proj.weight"
    bn = base[name].double().numpy()
    masks = _dare_masks(name, 3, 3, 0.5, bn.shape)
    kept = np.stack([(m[name].double().numpy() - bn) * mk / 0.5 for m, mk in zip(models, masks)])
    sign = np.where(kept.sum(0) >= 0, 1.0, -1.0)
    agree = np.sign(kept) == sign
    ref = bn + (kept * agree).sum(0) / np.maximum(agree.sum(0), 1)
    _close(load_dir(tmp_path / "out")[name], ref)


def test_interpolate_with_base(zoo, tmp_path):
    interpolate(zoo["base"], zoo["full"][0], 0.3, tmp_path / "out")
    base, models = _load(zoo, "full")
    for name, tensor in load_dir(tmp_path / "out").items():
        b = base[name].double().numpy()
        _close(tensor, b + 0.3 * (models[0][name].double().numpy() - b))


def test_unknown_method_and_param(zoo, tmp_path):
    from dtmerge.errors import DtmError

    with pytest.raises(DtmError, match="Did you mean 'ties'"):
        merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="tie")
    with pytest.raises(DtmError, match="no parameter 'densty'.*density"):
        merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="ties",
                     params={"densty": 0.5})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["linear", "task_arithmetic", "ties", "dare_linear",
                                    "dare_ties"])
def test_result_does_not_depend_on_the_blocks(zoo, tmp_path, method):
    """Cache-sized blocks (the default) and tiny uneven ones give bit-identical merges."""
    merge_models(zoo["base"], zoo["full"], tmp_path / "default", method=method)
    merge_models(zoo["base"], zoo["full"], tmp_path / "tiny", method=method, block_elements=500)
    a, b = load_dir(tmp_path / "default"), load_dir(tmp_path / "tiny")
    assert all(torch.equal(a[n], b[n]) for n in a)
    if method == "linear":
        _, models = _load(zoo, "full")
        for name, tensor in b.items():
            _close(tensor, sum(m[name].double().numpy() for m in models) / 3)


def test_ties_with_sampled_threshold_brackets(zoo, tmp_path, monkeypatch):
    """Every tensor's threshold bracketed from a (tiny) random sample read through mappings of
    full models and computed from LoRA factors: still the reference merge, exactly."""
    from dtmerge.merge.methods import sparse

    monkeypatch.setattr(sparse, "DIRECT_MAX", 0)
    monkeypatch.setattr(sparse, "SAMPLE_SIZE", 64)
    merge_models(zoo["base"], zoo["full"], tmp_path / "out", method="ties",
                 params={"density": 0.4}, block_elements=700)
    base, models = _load(zoo, "full")
    for name, tensor in load_dir(tmp_path / "out").items():
        _close(tensor, _ties_reference(base, models, name, [1 / 3] * 3, 0.4))
    merge_models(zoo["base"], zoo["lora"], tmp_path / "lora", method="ties",
                 params={"density": 0.4}, block_elements=700)
    monkeypatch.setattr(sparse, "DIRECT_MAX", 1 << 30)  # all values gathered: no sample
    merge_models(zoo["base"], zoo["lora"], tmp_path / "lora_direct", method="ties",
                 params={"density": 0.4}, block_elements=700)
    a, b = load_dir(tmp_path / "lora"), load_dir(tmp_path / "lora_direct")
    # The LoRA products of a sample and of a block are computed in different shapes, and with
    # the merge's worker threads their last bit can differ (seen: 1.5e-8). A threshold cut in
    # another place would differ by a kept value (>= the threshold), far above this tolerance.
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-6, atol=1e-7)
