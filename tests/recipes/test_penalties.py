"""The l2 and ewc penalties: zero at the base weights, growing with the update as their
formulas say; EWC's Fisher checked against an independent computation."""

import pytest
import torch

from dtmerge.train.penalties import WeightPenalty, fisher_diagonal, lora_update_sq_norm


def _peft(model_dir, r=4):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    return get_peft_model(base, LoraConfig(r=r, lora_alpha=8, target_modules=["up_proj", "down_proj"]))


def _set_b(model, seed, factor=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(factor * torch.randn(p.shape, generator=g))


def _explicit_sq(model):
    """sum over adapters of ||scale * B @ A||_F^2 with B @ A formed explicitly."""
    total = 0.0
    for m in model.modules():
        if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict) and "default" in m.lora_A:
            delta = m.scaling["default"] * (m.lora_B["default"].weight @ m.lora_A["default"].weight)
            total += delta.pow(2).sum().item()
    return total


def test_trace_formula_equals_frobenius_norm():
    torch.manual_seed(0)
    b, a = torch.randn(7, 3), torch.randn(3, 5)
    assert lora_update_sq_norm(b, a, 2.0).item() == pytest.approx((2.0 * b @ a).pow(2).sum().item(), rel=1e-5)


def test_l2_on_lora_is_zero_at_base_and_quadratic_in_the_update(tiny_model_dir):
    torch.set_num_threads(1)
    model = _peft(tiny_model_dir)
    pen = WeightPenalty(0.3).bind(model)
    assert pen.lora and pen(model).item() == 0.0  # B = 0: the adapter changes nothing
    _set_b(model, 1)
    want = 0.5 * 0.3 * _explicit_sq(model)
    assert want > 0 and pen(model).item() == pytest.approx(want, rel=1e-4)
    _set_b(model, 1, factor=2.0)  # twice the update: four times the penalty
    assert pen(model).item() == pytest.approx(4 * want, rel=1e-4)


def test_l2_full_finetuning_penalises_distance_to_base(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pen = WeightPenalty(2.0).bind(model)
    assert pen(model).item() == 0.0
    p = model.model.layers[0].mlp.up_proj.weight
    with torch.no_grad():
        p.add_(0.1)
    assert pen(model).item() == pytest.approx(0.5 * 2.0 * 0.01 * p.numel(), rel=1e-4)


TEXTS = ["the capital of paris is paris", "alice is born in rome", "bob works in london city"]


def _independent_fisher(model_dir, tokenizer, names):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    params = dict(model.named_parameters())
    sums = {n: torch.zeros_like(params[n]) for n in names}
    for text in TEXTS:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        logits = model(input_ids=ids).logits[0, :-1]
        nll = -torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).mean()
        grads = torch.autograd.grad(nll, [params[n] for n in names])
        for n, g in zip(names, grads):
            sums[n] += g ** 2
    return {n: s / len(TEXTS) for n, s in sums.items()}


def test_ewc_fisher_matches_an_independent_computation(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    names = {"model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"}
    fisher = fisher_diagonal(model, tok, TEXTS, 64, names, normalize=False)
    want = _independent_fisher(tiny_model_dir, tok, sorted(names))
    assert set(fisher) == names
    for n in names:
        torch.testing.assert_close(fisher[n], want[n], rtol=1e-4, atol=1e-10)
    normed = fisher_diagonal(model, tok, TEXTS, 64, names, normalize=True)
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean()
    for n in names:
        torch.testing.assert_close(normed[n], fisher[n] / mean, rtol=1e-4, atol=1e-8)


def test_ewc_on_lora_weights_the_update_by_the_fisher(tiny_model_dir):
    torch.set_num_threads(1)
    model = _peft(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    fisher = {}
    for m_name, m in model.named_modules():
        if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict) and "default" in m.lora_A:
            w = m.base_layer.weight
            fisher[m_name.removeprefix("base_model.model.") + ".weight"] = torch.rand(w.shape, generator=g)
    pen = WeightPenalty(0.5, fisher).bind(model)
    assert pen(model).item() == 0.0
    _set_b(model, 2)
    want = 0.0
    for m_name, m in model.named_modules():
        key = m_name.removeprefix("base_model.model.") + ".weight"
        if key in fisher:
            delta = m.scaling["default"] * (m.lora_B["default"].weight @ m.lora_A["default"].weight)
            want += (fisher[key] * delta ** 2).sum().item()
    assert pen(model).item() == pytest.approx(0.25 * want, rel=1e-4)
    _set_b(model, 2, factor=3.0)
    assert pen(model).item() == pytest.approx(9 * 0.25 * want, rel=1e-4)


def test_recipe_trainer_adds_the_penalty_to_the_sft_loss(tmp_path, tiny_model_dir):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from dtmerge.models.load import ALPACA_CHAT_TEMPLATE
    from dtmerge.train.recipe_trainer import RecipeTrainer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = ALPACA_CHAT_TEMPLATE
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "where is alice born"}],
                               "completion": [{"role": "assistant", "content": "alice is born in rome"}]}] * 4)
    trainer = RecipeTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), processing_class=tok,
        args=SFTConfig(output_dir=str(tmp_path / "w"), per_device_train_batch_size=2, report_to=[],
                     bf16=False),
        train_dataset=data, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"]),
        penalty=WeightPenalty(3.0))
    _set_b(trainer.model, 5)
    trainer.model.train()
    inputs = next(iter(trainer.get_train_dataloader()))
    plain = SFTTrainer.compute_loss(trainer, trainer.model, dict(inputs)).item()
    with_penalty = trainer.compute_loss(trainer.model, dict(inputs)).item()
    penalty = trainer.penalty(trainer.model).item()
    assert penalty > 0 and with_penalty == pytest.approx(plain + penalty, rel=1e-5)


def test_ewc_fisher_is_estimated_once_per_run_and_reestimated_when_its_inputs_change(
        tiny_model_dir, tmp_path, monkeypatch):
    """The sweep's runs and the recipe's own job share one Fisher file; a damaged file or a
    different text is estimated again."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    import dtmerge.train.penalties as penalties
    from dtmerge.train.recipe_trainer import FISHER_CACHE, _build_penalty

    torch.set_num_threads(1)
    text = tmp_path / "general.txt"
    text.write_text("\n".join(TEXTS))
    cfg = SimpleNamespace(runs_dir=str(tmp_path / "runs"), run_dir=tmp_path / "runs" / "r",
                          model=SimpleNamespace(path=str(tiny_model_dir), revision=None,
                                                dtype="float32", load_in_4bit=False),
                          train=SimpleNamespace(method="full", max_length=64))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    estimated = []
    real = penalties.fisher_diagonal
    monkeypatch.setattr(penalties, "fisher_diagonal",
                        lambda *a, **k: estimated.append(1) or real(*a, **k))
    spec = {"kind": "ewc", "coef": 1.0, "fisher_text": str(text), "fisher_docs": 3,
            "normalize": True, "text_hash": "h1"}
    first = _build_penalty(cfg, spec, model, tok).weights
    again = _build_penalty(cfg, {**spec, "coef": 5.0}, model, tok).weights  # coef: same Fisher
    assert len(estimated) == 1 and first.keys() == again.keys()
    assert all(torch.equal(first[n], again[n]) for n in first)
    (files,) = [list((cfg.run_dir / FISHER_CACHE).glob("*.safetensors"))]
    assert len(files) == 1 and not list((cfg.run_dir / FISHER_CACHE).glob(".*"))
    files[0].write_bytes(b"garbage")  # damaged: estimated again and replaced
    assert torch.equal(_build_penalty(cfg, spec, model, tok).weights[n := next(iter(first))],
                       first[n])
    _build_penalty(cfg, {**spec, "text_hash": "h2"}, model, tok)  # the text changed
    assert len(estimated) == 3
    assert len(list((cfg.run_dir / FISHER_CACHE).glob("*.safetensors"))) == 2
