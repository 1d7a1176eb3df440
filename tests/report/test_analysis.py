"""Trade-off line, error sets and result loading on hand-built results with known answers."""

import json

import pytest

from dtmerge.results.analysis import (
    TradeoffPoint, distance_to_line, error_sets, interpolation_line, tax_table, tradeoff_points,
)
from dtmerge.results.records import (
    ReportError, load_eval_dir, load_eval_file, settings_mismatches, split_tasks,
)
from report_fixtures import write_eval


def P(name, x, y, se=0.01):
    return TradeoffPoint(name, x, y, se, se)


def test_line_ordered_by_t_and_distance_read_at_the_instruction_level():
    pts = [P("sft", 0.8, 0.40), P("base", 0.2, 0.60), P("interp_0.5", 0.6, 0.55), P("dtm", 0.7, 0.52)]
    line = interpolation_line(pts)
    assert [p.variant for p in line] == ["base", "interp_0.5", "sft"]
    v = distance_to_line(pts[3], line)
    # halfway between interp_0.5 (0.6, 0.55) and sft (0.8, 0.40): line at 0.475
    assert v.line_knowledge == pytest.approx(0.475)
    assert v.distance == pytest.approx(0.045)
    assert "above" in v.text and "than simply training less" in v.text
    below = distance_to_line(P("dtm", 0.7, 0.45), line)
    assert below.distance == pytest.approx(-0.025)
    assert "below" in below.text and "does not beat" in below.text


def test_verdict_says_when_the_distance_is_noise():
    line = [P("base", 0.2, 0.6, 0.05), P("interp_0.5", 0.5, 0.5, 0.05), P("sft", 0.8, 0.4, 0.05)]
    v = distance_to_line(P("dtm", 0.5, 0.52, 0.05), line)
    assert v.distance == pytest.approx(0.02) and v.within_noise
    assert "not conclusive" in v.text


def test_outside_the_line_and_without_a_line():
    line = [P("base", 0.2, 0.6), P("interp_0.5", 0.5, 0.5), P("sft", 0.8, 0.4)]
    assert "better on both axes" in distance_to_line(P("dtm", 0.9, 0.5), line).text
    assert "trades" in distance_to_line(P("dtm", 0.9, 0.3), line).text
    assert "lost instruction following" in distance_to_line(P("dtm", 0.1, 0.7), line).text
    assert distance_to_line(P("dtm", 0.5, 0.5), line[:1]).distance is None
    # a chord of two points is no line to beat, and noise-free scores give no verdict
    assert "3 are needed" in distance_to_line(P("dtm", 0.5, 0.9), [line[0], line[2]]).text
    silent = distance_to_line(TradeoffPoint("dtm", 0.5, 0.9, 0.0), [TradeoffPoint(
        p.variant, p.instruction, p.knowledge, 0.0) for p in line])
    assert silent.better is None and "no noise estimate" in silent.text


def test_error_sets_count_shared_unique_and_fixed(tmp_path):
    # items 0-1 wrong for every sub-model, item 2 only sub_0, item 3 only sub_1, 4-5 right
    subs = {"sub_0": [0, 0, 0, 1, 1, 1], "sub_1": [0, 0, 1, 0, 1, 1], "sub_2": [0, 0, 1, 1, 1, 1]}
    for name, s in subs.items():
        write_eval(tmp_path, name, {"facts": ("knowledge", s)})
    write_eval(tmp_path, "dtm", {"facts": ("knowledge", [1, 0, 1, 0, 1, 1])})
    sets = error_sets(load_eval_dir(tmp_path / "eval"), ["facts"])
    s = sets["tasks"]["facts"]
    assert (s["items"], s["any_wrong"], s["shared"], s["shared_fixed"]) == (6, 4, 2, 1)
    assert s["unique"] == {"sub_0": 1, "sub_1": 1, "sub_2": 0}
    assert s["unique_fixed"] == {"sub_0": 1, "sub_1": 0, "sub_2": 0}
    assert s["merged_wrong"] == 2
    one = load_eval_dir(tmp_path / "eval")
    del one["sub_1"], one["sub_2"]
    assert error_sets(one, ["facts"]) is None  # needs two sub-models


def test_tax_and_tradeoff_from_files(tmp_path):
    write_eval(tmp_path, "base", {"k": ("knowledge", [1, 1, 1, 0]), "i": ("instruction", [0, 0, 0, 0])})
    write_eval(tmp_path, "sft", {"k": ("knowledge", [1, 0, 0, 0]), "i": ("instruction", [1, 1, 1, 0])})
    variants = load_eval_dir(tmp_path / "eval")
    assert list(variants) == ["base", "sft"]
    table = tax_table(variants, ["k", "i"], n_boot=200)
    assert table["k"]["sft"].tax == pytest.approx(-0.5)
    assert table["k"]["base"].tax_diff is None
    know, instr = split_tasks(variants)
    assert (know, instr) == (["k"], ["i"])
    assert split_tasks(variants, knowledge=["i"], instruction=["k"]) == (["i"], ["k"])
    pts = tradeoff_points(variants, know, instr)
    assert [(p.instruction, p.knowledge) for p in pts] == [(0.0, 0.75), (0.75, 0.25)]


def test_loading_names_the_problem(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_eval_file(bad)
    bad.write_text(json.dumps({"variant": "x", "tasks": {"t": {"metric": "acc"}}}))
    with pytest.raises(ReportError, match=r"tasks\.t\.score"):
        load_eval_file(bad)
    bad.write_text(json.dumps({"tasks": {"t": {"score": 1, "items": [{"score": 1}]}}}))
    with pytest.raises(ReportError, match=r"items\[0\] needs 'doc_id'"):
        load_eval_file(bad)


def test_settings_mismatch_is_reported(tmp_path):
    write_eval(tmp_path, "base", {"k": ("knowledge", [1, 0])}, settings={"num_fewshot": 0})
    write_eval(tmp_path, "sft", {"k": ("knowledge", [1, 0])}, settings={"num_fewshot": 5})
    problems = settings_mismatches(load_eval_dir(tmp_path / "eval"))
    assert len(problems) == 1 and "num_fewshot" in problems[0]


def test_past_the_line_with_a_paired_interval_is_read_against_its_end():
    line = [P("base", 0.2, 0.6), P("interp_0.5", 0.5, 0.5), P("sft", 0.8, 0.4)]
    beyond = distance_to_line(P("dtm_long", 0.9, 0.8), line, paired=(0.40, 0.05, 0.55))
    assert beyond.better is True and "better than training less" in beyond.text
    unsure = distance_to_line(P("dtm_long", 0.9, 0.45), line, paired=(0.05, -0.1, 0.2))
    assert unsure.better is None and "within noise" in unsure.text
