"""Showing the biases the paper blames for the alignment tax.

- `position_bias`: do multiple-choice predictions favour some answer letters beyond the gold
  distribution? (chi-square goodness of fit and total-variation distance)
- `boilerplate_bias`: do generations open with the same phrase, and how long are they against
  the references?
- `token_loss_shift`: the paper's token analysis: which tokens' loss a tuned model lowered most
  against the base, split into rare and common tokens by frequency in the training data.

Written by hand: these are the paper's own analyses, no library offers them.
`bias_stage` runs them over a run's eval results and writes `eval/bias.json`.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path
from typing import Sequence

LETTERS = string.ascii_uppercase


def position_bias(items: Sequence[dict], n_choices: int | None = None) -> dict:
    """Distribution of predicted answer positions against the gold positions.

    Args:
        items: Per-item records with integer `pred` and `gold` (choice indices).
        n_choices: Number of answer positions (default: largest index seen + 1).

    Returns:
        dict with `n`, `pred_share` and `gold_share` (per letter), `tv_distance` (half the L1
        distance between the two shares), `chi2` and `p_value` (predicted counts against the
        counts the gold distribution implies), `most_picked` and its `over_pick` (share
        predicted minus share gold).
    """
    # scipy.special, not scipy.stats.chisquare: the same p-value (chi2's survival function), and
    # importing scipy.stats took 0.9 s at the end of every eval stage here, scipy.special 0.3 s.
    from scipy.special import chdtrc

    pairs = [(it["pred"], it["gold"]) for it in items
             if isinstance(it.get("pred"), int) and isinstance(it.get("gold"), int)]
    if not pairs:
        return {"n": 0}
    k = n_choices or max(max(p, g) for p, g in pairs) + 1
    pred = Counter(p for p, _ in pairs)
    gold = Counter(g for _, g in pairs)
    n = len(pairs)
    pred_share = [pred[i] / n for i in range(k)]
    gold_share = [gold[i] / n for i in range(k)]
    tv = 0.5 * sum(abs(a - b) for a, b in zip(pred_share, gold_share))
    # Smoothed expected counts: a position that is never gold must not make chi2 infinite.
    expected = [(gold[i] + 0.5) / (n + 0.5 * k) * n for i in range(k)]
    chi2 = sum((pred[i] - expected[i]) ** 2 / expected[i] for i in range(k))
    p = chdtrc(k - 1, chi2)
    top = max(range(k), key=lambda i: pred_share[i] - gold_share[i])
    labels = [LETTERS[i] if i < 26 else str(i) for i in range(k)]
    return {
        "n": n, "n_choices": k,
        "pred_share": dict(zip(labels, pred_share)), "gold_share": dict(zip(labels, gold_share)),
        "tv_distance": tv, "chi2": float(chi2), "p_value": float(p),
        "most_picked": labels[top], "over_pick": pred_share[top] - gold_share[top],
    }


def _opening(text: str, n_words: int) -> str:
    words = text.strip().lower().split()
    return " ".join(w.strip(string.punctuation) for w in words[:n_words])


def boilerplate_bias(responses: Sequence[str], references: Sequence[str] | None = None,
                     n_words: int = 3) -> dict:
    """How formulaic generations are: shared openings and length against the references.

    Args:
        responses: Generated texts.
        references: Reference answers for the same prompts (optional).
        n_words: Words that make up an opening phrase.

    Returns:
        dict with `n`, `top_opening`, `top_opening_share` (share of responses starting with the
        most common opening), `distinct_opening_share`, `mean_words`, and, with references,
        `reference_mean_words` and `length_ratio` (mean response / mean reference length).
    """
    texts = [r for r in responses if isinstance(r, str)]
    if not texts:
        return {"n": 0}
    openings = Counter(_opening(t, n_words) for t in texts if t.strip())
    top, count = openings.most_common(1)[0] if openings else ("", 0)
    out = {
        "n": len(texts), "top_opening": top, "top_opening_share": count / len(texts),
        "distinct_opening_share": len(openings) / len(texts),
        "mean_words": sum(len(t.split()) for t in texts) / len(texts),
    }
    refs = [r for r in (references or []) if isinstance(r, str)]
    if refs:
        ref_mean = sum(len(r.split()) for r in refs) / len(refs)
        out["reference_mean_words"] = ref_mean
        out["length_ratio"] = out["mean_words"] / ref_mean if ref_mean else None
    return out


def token_loss_shift(base_model, tuned_models: dict, records: Sequence[dict], tokenizer,
                     train_records: Sequence[dict] | None = None, top_k: int = 20,
                     rare_quantile: float = 0.5, max_length: int = 256) -> dict:
    """The paper's token analysis: tokens whose loss each tuned model lowered most vs base.

    Args:
        base_model: The base causal LM (a loaded model).
        tuned_models: name -> tuned model (SFT, sub-models, DTM...), or a zero-argument
            loader returning it, so large models are loaded one at a time.
        records: Normalised records whose completion tokens are scored.
        tokenizer: The tokenizer used in training (with its chat template).
        train_records: Records counted for token frequency (default: `records`).
        top_k: Tokens listed per model.
        rare_quantile: Token types at or below this quantile of training frequency are "rare".
        max_length: Truncation of each record in tokens.

    Returns:
        {"rare_max_count": c, "models": {name: {"top_tokens": [{token, id, loss_drop, count,
        rare}], "rare_share_of_top": f, "mean_drop_rare": x, "mean_drop_common": y}}}.
    """
    import torch

    from dtmerge.evaluate.scoring import completion_token_losses, encode_record

    encoded = [encode_record(tokenizer, r, max_length) for r in records]
    freq: Counter = Counter()
    for r in (train_records if train_records is not None else records):
        ids, start = encode_record(tokenizer, r, max_length)
        freq.update(ids[start:])
    counts = sorted(freq.values())
    rare_max = counts[min(int(rare_quantile * len(counts)), len(counts) - 1)] if counts else 0
    pad = tokenizer.pad_token_id or 0

    def per_token_loss(model) -> tuple[dict[int, float], dict[int, int]]:
        total: dict[int, float] = {}
        seen: dict[int, int] = {}
        for ids, losses in completion_token_losses(model, encoded, pad):
            for t, v in zip(ids, losses.tolist()):
                total[t] = total.get(t, 0.0) + v
                seen[t] = seen.get(t, 0) + 1
        return {t: total[t] / seen[t] for t in total}, seen

    with torch.no_grad():
        base_loss, seen = per_token_loss(base_model)
        out: dict = {"rare_max_count": rare_max, "models": {}}
        for name, model in tuned_models.items():
            if callable(model) and not isinstance(model, torch.nn.Module):
                model = model()
            tuned_loss, _ = per_token_loss(model)
            del model
            drops = {t: base_loss[t] - tuned_loss[t] for t in base_loss if t in tuned_loss}
            ranked = sorted(drops, key=drops.get, reverse=True)[:top_k]
            rare = {t for t in drops if freq.get(t, 0) <= rare_max}
            rare_d = [drops[t] for t in drops if t in rare]
            common_d = [drops[t] for t in drops if t not in rare]
            out["models"][name] = {
                "top_tokens": [{"token": tokenizer.decode([t]), "id": int(t),
                                "loss_drop": drops[t], "count": freq.get(t, 0),
                                "rare": t in rare} for t in ranked],
                "rare_share_of_top": sum(t in rare for t in ranked) / max(len(ranked), 1),
                "mean_drop_rare": sum(rare_d) / len(rare_d) if rare_d else None,
                "mean_drop_common": sum(common_d) / len(common_d) if common_d else None,
            }
    return out


def eval_bias(result: dict) -> dict:
    """Position and boilerplate bias of every task in one eval JSON."""
    out = {}
    for task, tr in result.get("tasks", {}).items():
        items = tr.get("items", [])
        if any(isinstance(it.get("pred"), int) for it in items):
            out[task] = {"position": position_bias(items)}
        elif any(isinstance(it.get("response"), str) for it in items):
            refs = [it["gold"] for it in items if isinstance(it.get("gold"), str)]
            out[task] = {"boilerplate": boilerplate_bias([it["response"] for it in items], refs)}
    return out


def bias_stage(cfg, run, log=print, max_records: int = 64) -> dict:
    """Write `eval/bias.json`: per-variant position/boilerplate bias and the token analysis.

    The token analysis scores the held-out records (or the first training records) with the
    base model and every trained variant found under `models/`.
    """
    from dtmerge.rundir import (
        atomic_write_json, hash_obj, hash_path, read_state_json, rerun_hint, run_job,
        sub_model_name,
    )

    eval_dir = Path(run.eval_file("x")).parent
    from dtmerge.evaluate.split import SPLIT_FILE

    files = sorted(p for p in eval_dir.glob("*.json") if p.name not in ("bias.json", SPLIT_FILE))
    subs = [sub_model_name("dtm", k) for k in range(cfg.disperse.num_portions)]
    models = [n for n in ("sft", "dtm", *subs)
              if run.model(n).exists()]
    fp = hash_obj({"evals": [hash_path(p) for p in files],
                   "models": [hash_path(run.model(n)) for n in models],
                   "data": hash_path(run.all_data) if run.all_data.exists() else None})

    def work():
        per_variant = {}
        for p in files:
            result = read_state_json(p, rerun_hint(f"dtm eval {run.root}"))
            per_variant[result.get("variant", p.stem)] = eval_bias(result)
        out = {"variants": per_variant, "tokens": None}
        if models and run.all_data.exists():
            out["tokens"] = _token_analysis(cfg, run, models, max_records)
        atomic_write_json(eval_dir / "bias.json", out)
        return {"outputs": [str(eval_dir / "bias.json")]}

    run_job(run, "eval:bias", fp, work, outputs=[eval_dir / "bias.json"], log=log)
    return read_state_json(eval_dir / "bias.json", rerun_hint(f"dtm eval {run.root}"))


def _token_analysis(cfg, run, names: list[str], max_records: int) -> dict:
    from dtmerge.data.jsonl import read_jsonl
    from dtmerge.evaluate.weights import load_variant
    from dtmerge.models import load_model, load_tokenizer

    train = read_jsonl(run.all_data)
    held = read_jsonl(run.heldout_data) if run.heldout_data.exists() else []
    records = (held or train)[:max_records]
    tokenizer = load_tokenizer(cfg.model)
    base = load_model(cfg.model)
    tuned = {n: (lambda n=n: load_variant(cfg, run.model(n))) for n in names}
    return token_loss_shift(base, tuned, records, tokenizer, train_records=train,
                            max_length=min(cfg.train.max_length, 256))
