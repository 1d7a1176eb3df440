"""Lower-is-better language-modelling tasks in the report and in `dtm compare`: direction,
ratio-of-sums intervals, labels, and never averaged with accuracies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dtmerge.report.build import build_report
from dtmerge.report.compare import compare_results
from dtmerge.report.document import to_markdown
from dtmerge.results.records import load_eval_dir, load_eval_file, split_tasks
from dtmerge.evaluate.stats import paired_ratio_bootstrap, ratio_interval
from dtmerge.rundir import RunDir
from report_fixtures import write_eval

LN2 = math.log(2)


def _lm_entry(nll_per_byte: np.ndarray, nbytes: np.ndarray, with_direction: bool = True) -> dict:
    ll = -nll_per_byte * nbytes
    score = float((-ll).sum() / nbytes.sum() / LN2)
    entry = {
        "metric": "bits_per_byte", "score": score, "stderr": None, "n": len(ll),
        "metrics": {"bits_per_byte": score, "byte_perplexity": float(math.exp(score * LN2))},
        "category": "knowledge", "aggregation": "ratio_of_sums",
        "items": [{"doc_id": i, "score": float(-l / b / LN2), "loglikelihood": float(l),
                   "bytes": int(b), "words": int(b // 5), "pred": None, "gold": None,
                   "response": None} for i, (l, b) in enumerate(zip(ll, nbytes))],
    }
    if with_direction:
        entry["higher_is_better"] = False
    return entry


def _lm_run(root, shifts: dict[str, float], seed: int = 0, n_docs: int = 40):
    """base/sft/dtm with two accuracy tasks and one LM-loss task; `shifts` raise each variant's
    per-byte loss (in nats) over the base's on every document."""
    rng = np.random.default_rng(seed)
    nbytes = rng.integers(200, 4000, n_docs)  # documents of very different lengths
    base_nll = rng.uniform(0.6, 1.4, n_docs)
    acc = {"base": (0.7, 0.2), "sft": (0.55, 0.7), "dtm": (0.65, 0.68)}
    for variant, shift in shifts.items():
        know, instr = acc[variant]
        path = write_eval(root, variant, {
            "facts": ("knowledge", (rng.random(120) < know).astype(float).tolist()),
            "follow": ("instruction", (rng.random(120) < instr).astype(float).tolist()),
        })
        data = json.loads(path.read_text())
        nll = base_nll + shift + rng.normal(0, 0.01, n_docs)
        data["tasks"]["heldout"] = _lm_entry(nll, nbytes)
        path.write_text(json.dumps(data))
    return RunDir(root)


def test_report_puts_lm_loss_in_its_own_section_with_direction(tmp_path):
    run = _lm_run(tmp_path / "r", {"base": 0.0, "sft": 0.05, "dtm": 0.0})
    report = build_report(run, n_boot=500)
    data = report.data
    assert data["lm_loss_tasks"] == ["heldout"] and data["higher_is_better"]["heldout"] is False
    assert "heldout" not in data["knowledge_tasks"] and data["knowledge_tasks"] == ["facts"]
    sft = data["lm_loss"]["heldout"]["sft"]["change_vs_base"]
    assert sft["mean"] > 0 and sft["significant"] and sft["higher_is_better"] is False
    assert sft["method"] == "ratio-bootstrap"
    dtm = data["lm_loss"]["heldout"]["dtm"]["change_vs_base"]
    assert not dtm["significant"]
    # the change is the difference of ratio-of-sums scores, not a mean of per-doc differences
    scores = data["scores"]
    assert sft["mean"] == pytest.approx(scores["sft"]["heldout"] - scores["base"]["heldout"])
    low, high = data["lm_loss"]["heldout"]["base"]["interval"]
    assert low < scores["base"]["heldout"] < high
    md = to_markdown(report.title, report.sections)
    assert "bits per byte (lower is better)" in md
    assert "Forgetting: held-out language-modelling loss" in md
    assert "sft raises bits per byte (lower is better) on heldout" in md
    images = {b.name for s in report.sections for b in s.blocks if hasattr(b, "png")}
    assert {"tax.png", "lm_loss.png"} <= images
    # a rise in bits per byte is marked worse (▼) in the tax table, not better
    tax = next(b for s in report.sections for b in s.blocks
               if getattr(b, "caption", "").startswith("Change against base"))
    col = tax.headers.index("tax: heldout: bits per byte (lower is better)")
    sft_row = next(r for r in tax.rows if r[0] == "sft")
    assert sft_row[col].endswith("▼")


def test_lm_task_named_as_knowledge_is_kept_out_of_the_mean(tmp_path):
    run = _lm_run(tmp_path / "r", {"base": 0.0, "sft": 0.05, "dtm": 0.01})
    variants = load_eval_dir(run.root / "eval")
    know, _ = split_tasks(variants, knowledge=["facts", "heldout"], instruction=["follow"])
    assert know == ["facts"]
    report = build_report(run, knowledge=["facts", "heldout"], instruction=["follow"], n_boot=200)
    md = to_markdown(report.title, report.sections)
    assert "left out of the means" in md
    points = report.data["tradeoff"]["points"]
    assert points["base"]["knowledge"] == pytest.approx(report.data["scores"]["base"]["facts"])


def test_compare_flags_a_rise_in_bits_per_byte_as_regression(tmp_path):
    run = _lm_run(tmp_path / "r", {"base": 0.0, "sft": 0.05, "dtm": -0.05})
    base = load_eval_file(run.eval_file("base"))
    worse = compare_results(base, load_eval_file(run.eval_file("sft")), n_boot=500)
    better = compare_results(base, load_eval_file(run.eval_file("dtm")), n_boot=500)
    assert "heldout" in worse.regressions
    row = next(r for r in better.rows if r.task == "heldout")
    assert row.diff.mean < 0 and row.verdict == "better" and not row.regression
    assert any("(lower is better)" in r[0] for r in worse.table().rows)


def test_files_without_direction_use_the_metric_name(tmp_path):
    run = _lm_run(tmp_path / "r", {"base": 0.0})
    path = run.eval_file("base")
    data = json.loads(path.read_text())
    data["tasks"]["heldout"].pop("higher_is_better")
    path.write_text(json.dumps(data))
    r = load_eval_file(path).tasks["heldout"]
    assert r.higher_is_better is False and len(r.parts) == r.n


def test_ratio_bootstrap_uses_sums_not_mean_of_ratios():
    rng = np.random.default_rng(1)
    den = rng.integers(10, 1000, 60).astype(float)
    num_a = den * rng.uniform(0.5, 1.5, 60)
    num_b = num_a + den * 0.1  # every document 0.1 worse per unit
    d = paired_ratio_bootstrap(list(zip(num_a, den)), list(zip(num_b, den)), n_boot=500)
    assert d.mean == pytest.approx(num_b.sum() / den.sum() - num_a.sum() / den.sum())
    assert d.mean == pytest.approx(0.1) and d.low <= d.mean <= d.high
    assert d.significant and d.mark() == "▼"  # lower is better: a rise is worse
    same = paired_ratio_bootstrap(list(zip(num_a, den)), list(zip(num_a, den)), n_boot=100)
    assert same.mean == 0 and not same.significant
    low, high, se = ratio_interval(num_a, den, n_boot=500)
    assert low < num_a.sum() / den.sum() < high and se > 0
    with pytest.raises(ValueError):
        paired_ratio_bootstrap([(1.0, 2.0)], [], n_boot=10)
