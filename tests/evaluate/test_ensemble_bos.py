"""The ensemble tokenises exactly as lm-eval's HFLM: with the BOS token a Gemma- or Llama-style
tokenizer adds, and without it for one that adds none. A one-member ensemble must then score
every request as HFLM scores it."""

from __future__ import annotations

import pytest
import torch

from tiny import build_tiny_model_dir, build_tiny_tokenizer


def _tokenizer(adds_bos: bool):
    tok = build_tiny_tokenizer()
    if adds_bos:  # what Gemma's and Llama's tokenizers do: "<bos> text"
        from tokenizers.processors import TemplateProcessing

        tok.backend_tokenizer.post_processor = TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    return tok


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("bos") / "model", seed=3)


def _pair(model_dir, adds_bos: bool):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    from dtmerge.evaluate.ensemble import EnsembleLM

    torch.set_num_threads(1)
    tok = _tokenizer(adds_bos)
    hf = HFLM(pretrained=str(model_dir), tokenizer=tok, device="cpu", batch_size=1,
              dtype="float32")
    ours = EnsembleLM([AutoModelForCausalLM.from_pretrained(model_dir).eval()], tok)
    return hf, ours, tok


def _req(kind, args):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


@pytest.mark.parametrize("adds_bos", [True, False], ids=["bos", "no_bos"])
def test_one_member_ensemble_log_likelihoods_equal_hflms(model_dir, adds_bos):
    hf, ours, tok = _pair(model_dir, adds_bos)
    encoded = ours.tok_encode("where is alice born")
    assert encoded == hf.tok_encode("where is alice born")
    assert (encoded[0] == tok.bos_token_id) is adds_bos  # the BOS is there only when added

    pairs = [_req("loglikelihood", ("where is alice born", " in rome")),
             _req("loglikelihood", ("Question: who works in paris\nAnswer: ", "bob")),
             _req("loglikelihood", ("", "alice is born in london"))]
    want = hf.loglikelihood(pairs, disable_tqdm=True)
    got = ours.loglikelihood(pairs, disable_tqdm=True)
    for (a, greedy_a), (b, greedy_b) in zip(want, got):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-5) and greedy_a == greedy_b

    rolling = [_req("loglikelihood_rolling", ("the capital of paris is paris and bob works in london",))]
    assert ours.loglikelihood_rolling(rolling)[0] == pytest.approx(
        hf.loglikelihood_rolling(rolling, disable_tqdm=True)[0], rel=1e-5)


def test_bos_changes_the_scores_so_the_comparison_above_is_not_vacuous(model_dir):
    """Scoring with and without the BOS gives different numbers on this model: matching HFLM
    on the BOS tokenizer is a real constraint, not an accident of the model."""
    _, with_bos, _ = _pair(model_dir, True)
    _, without, _ = _pair(model_dir, False)
    req = [_req("loglikelihood", ("where is alice born", " in rome"))]
    assert with_bos.loglikelihood(req, disable_tqdm=True)[0][0] != pytest.approx(
        without.loglikelihood(req, disable_tqdm=True)[0][0], rel=1e-4)


@pytest.mark.parametrize("adds_bos", [True, False], ids=["bos", "no_bos"])
def test_one_member_ensemble_generates_like_hflm(model_dir, adds_bos):
    hf, ours, _ = _pair(model_dir, adds_bos)
    reqs = [_req("generate_until", (c, {"until": ["paris"], "max_gen_toks": 8, "do_sample": False}))
            for c in ["where is alice born", "bob works in"]]
    assert ours.generate_until(reqs) == hf.generate_until(reqs, disable_tqdm=True)
