"""The Answer block and the noise checks behind every 'better' in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtmerge.results.analysis import TradeoffPoint, distance_to_line
from dtmerge.report.build import build_report
from dtmerge.report.document import to_markdown
from dtmerge.rundir import RunDir
from report_fixtures import write_eval
from test_lm_loss_report import _lm_entry


def _hits(n: int, correct: int, rng) -> list[float]:
    x = np.zeros(n)
    x[rng.permutation(n)[:correct]] = 1.0
    return x.tolist()


def _run(root, acc: dict[str, tuple[float, float]], n: int = 300, seed: int = 0) -> RunDir:
    """variant -> (knowledge accuracy, instruction accuracy), exact counts on n items."""
    rng = np.random.default_rng(seed)
    for variant, (know, instr) in acc.items():
        write_eval(root, variant, {"facts": ("knowledge", _hits(n, int(know * n), rng)),
                                   "follow": ("instruction", _hits(n, int(instr * n), rng))})
    return RunDir(root)


def _flip(path, task: str, k: int) -> None:
    """Flip the first k items of a task (changes the score by at most k/n, in noise)."""
    data = json.loads(path.read_text())
    items = data["tasks"][task]["items"]
    for it in items[:k]:
        it["score"] = 1.0 - it["score"]
    data["tasks"][task]["score"] = float(np.mean([it["score"] for it in items]))
    path.write_text(json.dumps(data))


def _answer(report) -> str:
    sec = report.sections[0]
    assert sec.title == "Answer"
    return " ".join(b.text for b in sec.blocks if hasattr(b, "text"))


def test_a_difference_smaller_than_its_noise_is_said_to_be_within_noise(tmp_path):
    run = _run(tmp_path / "r", {"base": (0.7, 0.2), "sft": (0.55, 0.7)})
    sft = run.root / "eval" / "sft.json"
    (run.root / "eval" / "dtm.json").write_text(sft.read_text().replace('"sft"', '"dtm"'))
    _flip(run.root / "eval" / "dtm.json", "facts", 3)  # 3 of 300 items: ~0.003 apart
    report = build_report(run, n_boot=400)
    text = _answer(report)
    assert "dtm is within noise of SFT on every axis" in text
    assert "(within noise)" in text and "(better)" not in text
    assert report.data["answer"]["ship"] == "sft"  # nothing beats SFT beyond noise


def test_beyond_the_line_is_not_better_on_both_axes_when_the_gaps_are_noise():
    # the demo's overclaim: knowledge 0.87417 vs 0.87389 with a standard error of 0.015
    line = [TradeoffPoint("base", 0.2, 0.9, 0.015, 0.02),
            TradeoffPoint("interp_0.5", 0.35, 0.89, 0.015, 0.02),
            TradeoffPoint("sft", 0.50, 0.87389, 0.015, 0.02)]
    v = distance_to_line(TradeoffPoint("dtm", 0.51, 0.87417, 0.015, 0.02), line)
    assert "better on both axes" not in v.text
    assert "within noise" in v.text and v.better is None
    clear = distance_to_line(TradeoffPoint("dtm", 0.70, 0.95, 0.005, 0.01), line)
    assert "better on both axes" in clear.text and clear.better is True
    # knowledge far above, instruction following a noisy step past SFT: only that gap is noise
    mixed = distance_to_line(TradeoffPoint("l2", 0.52, 0.99, 0.005, 0.02), line)
    assert "the instruction following gap is within noise" in mixed.text
    assert "knowledge" not in mixed.text.split("but the")[1]


def test_answer_names_the_winner_and_the_line_beating_sft(tmp_path):
    run = _run(tmp_path / "r", {"base": (0.80, 0.10), "sft": (0.50, 0.60), "dtm": (0.70, 0.62),
                                "interp_0.75": (0.65, 0.70)})
    report = build_report(run, n_boot=400)
    text = _answer(report)
    # the recommendation comes first: dtm is within noise of the line, so training less
    # (interp_0.75 meets SFT's instruction level and keeps more knowledge) is the answer
    assert text.startswith("Train less: ship interp_0.75")
    assert "No method beat training less on this run" in text
    assert "dtm beats SFT on knowledge" in text and "[+" in text
    assert "The interpolation line dominates SFT: interp_0.75 beats SFT" in text
    assert "SFT is over-trained" in text
    assert "The interpolation line dominates SFT: interp_0.75 beats SFT on knowledge and instruction following" in text
    assert "dtm is within noise of the interpolation line on knowledge" in text
    assert report.data["answer"]["ship"] == "interp_0.75"
    assert report.data["answer"]["decision"]["kind"] == "line"
    md = to_markdown(report.title, report.sections)
    assert md.index("## Answer") < md.index("## Scores and alignment tax")


def test_many_methods_are_one_table_row_each_and_dtm_keeps_its_sentences(tmp_path):
    """A recipes run: DTM in sentences, every other method one row (vs SFT, vs the line)."""
    acc = {"base": (0.80, 0.10), "sft": (0.50, 0.60), "dtm": (0.70, 0.40),
           "interp_0.5": (0.70, 0.40), "l2": (0.79, 0.61), "replay": (0.78, 0.60),
           "curated": (0.50, 0.60), "ensemble": (0.40, 0.40)}
    run = _run(tmp_path / "r", acc)
    _flip(run.eval_file("curated"), "facts", 3)  # curated: SFT within noise
    report = build_report(run, n_boot=400)
    sec = report.sections[0]
    text = _answer(report)
    assert "dtm trades: better than SFT on knowledge" in text  # DTM keeps its sentences
    assert "4 other methods, one row each in the table below" in text
    assert "l2 and replay beat SFT" in text and "curated is within noise of SFT" in text
    assert "ensemble is worse than SFT" in text
    tables = [b for b in sec.blocks if hasattr(b, "rows")]
    # first the choice against each line point on test items, right after that sentence
    checked = tables[0]
    assert "test items" in checked.caption and checked.headers[0] == "line point"
    assert "test items (not used to choose)" in sec.blocks[sec.blocks.index(checked) - 1].text
    table = next(t for t in tables if t.caption.startswith("Every other method"))
    rows = {r[0]: r for r in table.rows}
    assert sorted(rows) == ["curated", "ensemble", "l2", "replay"]
    assert rows["l2"][1] == "beats" and rows["curated"][1] == "within noise"
    assert rows["ensemble"][1] == "worse" and "(worse)" in rows["ensemble"][3]
    assert table.headers[-1] == "vs the line (knowledge) [95%]"
    # the table sits right after the sentence announcing it; the choice comes first
    at = sec.blocks.index(table)
    assert "one row each" in sec.blocks[at - 1].text
    assert sec.blocks[0].text.startswith(("Ship ", "Train less: ship "))
    assert report.data["answer"]["table"]["rows"] == table.rows
    # a few methods: sentences for each, no table
    few = build_report(_run(tmp_path / "few", {k: acc[k] for k in ("base", "sft", "dtm", "l2")}),
                       n_boot=400)
    assert not any(hasattr(b, "rows") and b.caption.startswith("Every other method")
                   for b in few.sections[0].blocks)
    assert "l2 beats SFT on knowledge" in _answer(few)


def loss_run(root) -> RunDir:
    """A Gemma-like run: accuracies flat, held-out bits per byte the signal that moves.
    (instruction accuracy, forgetting shift in nats per byte) per variant: dtm at
    interp_0.5's instruction level but forgetting more."""
    rng = np.random.default_rng(1)
    nbytes = rng.integers(200, 4000, 60)
    base_nll = rng.uniform(0.6, 1.4, 60)
    spec = {"base": (0.2, 0.0), "interp_0.5": (0.5, 0.005), "sft": (0.7, 0.03), "dtm": (0.5, 0.02)}
    for variant, (instr, shift) in spec.items():
        path = write_eval(root, variant, {"facts": ("knowledge", _hits(300, 150, rng)),
                                          "follow": ("instruction", _hits(300, int(instr * 300), rng))})
        data = json.loads(path.read_text())
        data["tasks"]["heldout"] = _lm_entry(base_nll + shift + rng.normal(0, 0.001, 60), nbytes)
        path.write_text(json.dumps(data))
    return RunDir(root)


def test_loss_plane_places_forgetting_against_the_line(tmp_path):
    report = build_report(loss_run(tmp_path / "r"), n_boot=400)
    md = to_markdown(report.title, report.sections)
    assert "## Trade-off in loss: forgetting against instruction following" in md
    verdict = report.data["lm_tradeoff"]["heldout"]["verdicts"]["dtm"]
    assert verdict["better"] is False and verdict["distance"] > 0
    assert report.data["lm_tradeoff"]["heldout"]["line"] == ["base", "interp_0.5", "sft"]
    assert "dtm does not beat training less on loss on heldout" in _answer(report)
    assert "tradeoff_heldout.png" in {b.name for s in report.sections for b in s.blocks
                                      if hasattr(b, "png")}


@pytest.mark.parametrize("categories,label", [
    (("knowledge", "reasoning"), "knowledge & reasoning mean"),
    (("knowledge", "knowledge"), "knowledge mean"),
])
def test_the_mean_column_names_what_it_averages(tmp_path, categories, label):
    root = tmp_path / "r"
    for variant in ("base", "sft"):
        write_eval(root, variant, {"a": (categories[0], [1.0, 0.0, 1.0]),
                                   "b": (categories[1], [1.0, 1.0, 0.0]),
                                   "f": ("instruction", [0.0, 1.0, 1.0])})
    report = build_report(RunDir(root), n_boot=100)
    scores = next(b for b in report.sections[1].blocks if getattr(b, "caption", "").startswith("Score"))
    assert label in scores.headers
    other = "knowledge & reasoning mean" if label == "knowledge mean" else "knowledge mean"
    assert other not in scores.headers


def test_gains_and_taxes_are_separate_columns(run_root):
    report = build_report(RunDir(run_root), n_boot=100)
    table = next(b for s in report.sections for b in s.blocks
                 if getattr(b, "caption", "").startswith("Change against base"))
    assert table.headers == ["variant", "tax: facts", "tax: science", "tax: arith", "gain: follow"]
    sft = next(r for r in table.rows if r[0] == "sft")
    assert sft[4].endswith("▲")  # instruction following learned: a gain, marked up


def test_timings_leave_out_the_report_being_written_and_list_linked_runs(run_root, tmp_path):
    manifest = json.loads((run_root / "manifest.json").read_text())
    manifest["jobs"]["report"] = {"status": "running", "started": 0}
    (run_root / "manifest.json").write_text(json.dumps(manifest))
    long_run = tmp_path / "long"
    long_run.mkdir()
    (long_run / "manifest.json").write_text(json.dumps(
        {"jobs": {"train:sub_0": {"status": "done", "seconds": 125.0}}}))
    (run_root / "linked_runs.json").write_text(json.dumps({"dtm_long": str(long_run)}))
    md = to_markdown(*_title_sections(build_report(RunDir(run_root), n_boot=100)))
    timings = md[md.index("## Run timings"):]
    assert "| report |" not in timings
    assert "| dtm_long ← train:sub_0 | done | 2m05s |" in timings


def _title_sections(report):
    return report.title, report.sections


def test_empty_sections_say_why(tmp_path):
    run = _run(tmp_path / "r", {"base": (0.7, 0.2), "sft": (0.55, 0.7), "dtm": (0.65, 0.68)})
    md = to_markdown(*_title_sections(build_report(run, n_boot=100)))
    assert "Empty: this run scored 0 sub-model(s)" in md and "`submodels` to eval.variants" in md
    assert "Empty: no training job of this run wrote monitor curves" in md
    assert "Empty: this run has no eval/bias.json" in md
    assert "No manifest.json jobs" in md


def test_bias_tables_state_thresholds_and_findings(run_root):
    md = to_markdown(*_title_sections(build_report(RunDir(run_root), n_boot=100)))
    assert ("Finding: answer-position bias in sft on facts (over-picks A, TV 0.30)" in md
            and "threshold: TV distance ≥ 0.10 with p < 0.05" in md)
    assert "Finding: boilerplate or length bias in sft on follow (same opening 40%, length 1.80× reference)" in md
    # the fixture's rare share 0.8 supports the paper's account
    assert "Finding: consistent with the paper's rare-token account" in md


def test_token_table_notices_a_contradiction_of_the_rare_token_account(run_root):
    bias = json.loads((run_root / "eval" / "bias.json").read_text())
    bias["tokens"]["models"]["sft"] = {
        "top_tokens": [{"token": "\n", "rare": False}, {"token": " helps", "rare": False},
                       {"token": "Answer", "rare": False}, {"token": "zq", "rare": True}],
        "rare_share_of_top": 0.25, "mean_drop_rare": 0.1, "mean_drop_common": 0.3}
    (run_root / "eval" / "bias.json").write_text(json.dumps(bias))
    md = to_markdown(*_title_sections(build_report(RunDir(run_root), n_boot=100)))
    assert "contradict the paper's rare-token account for sft" in md
    assert "' helps'" in md and "'Answer'" in md


def test_line_cells_say_better_or_worse_with_the_interval():
    from dtmerge.decision.rule import Interval
    from dtmerge.report.sections.answer import line_word

    # distances are signed so that > 0 is the better side on every plane (loss included)
    assert line_word(Interval(0.023, 0.01, 0.03)) == "better (+0.0230 [+0.0100, +0.0300])"
    assert line_word(Interval(-0.0032, -0.005, -0.001)).startswith("worse (-0.0032")
    assert line_word(Interval(-0.001, -0.004, 0.003)).startswith("within noise (-0.0010")
