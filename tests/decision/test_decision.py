"""The one decision: what it recommends on runs built to have a known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtmerge.config import AnswerConfig
from dtmerge.decision import confirm, decide_run
from dtmerge.decision.rule import holm
from dtmerge.rundir import RunDir
from synthetic import LINE, write_run

ANSWER = AnswerConfig()


def decide(root, answer=ANSWER, **kw):
    return decide_run(RunDir(root), answer, n_boot=600, seed=0, **kw)


def test_a_method_better_on_accuracy_but_worse_than_the_line_on_loss_is_never_recommended(tmp_path):
    # above the line on knowledge (0.84 at SFT's instruction level, line ~0.60) but forgets more
    # than SFT itself in held-out loss
    rd = decide(write_run(tmp_path, {"ties_x4": (0.66, 0.84, 0.30)}))
    d = rd.decision
    verdict = {v.name: v for v in d.candidates}["ties_x4"]
    assert verdict.plane("knowledge").word == "better"
    assert verdict.plane("loss on heldout").word == "worse"
    assert not verdict.qualified
    assert d.choice != "ties_x4" and d.train_less
    assert "No method beat training less" in d.headline or "no method beat" in d.headline


def test_when_nothing_beats_the_line_the_answer_is_the_interpolation_point_that_meets_the_target(tmp_path):
    # dtm lies on the line (between interp_0.5 and interp_0.75); a target of 0.55 instruction
    # following is met by interp_0.5 (0.55) with less forgetting than interp_0.75 and SFT
    answer = AnswerConfig(target=0.55, margin=0.05)
    rd = decide(write_run(tmp_path, {"dtm": (0.58, 0.80, 0.05)}), answer)
    d = rd.decision
    assert d.kind == "line" and d.choice == "interp_0.5", d.headline
    assert d.headline.startswith("Train less: ship interp_0.5")
    assert "No method beat training less on this run" in d.headline


def test_match_sft_falls_back_to_sft_when_no_point_toward_the_base_keeps_its_level(tmp_path):
    rd = decide(write_run(tmp_path, {"dtm": (0.40, 0.70, 0.10)}),
                AnswerConfig(target="match_sft", margin=0.0))
    assert rd.decision.choice == "sft" and rd.decision.kind == "sft"


def test_a_method_that_clearly_beats_the_line_on_every_plane_is_chosen(tmp_path):
    rd = decide(write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02), "l2": (0.66, 0.62, 0.14)}))
    d = rd.decision
    assert d.kind == "method" and d.choice == "dtm", d.headline
    assert d.headline.startswith("Ship dtm")
    assert "one training seed; item noise only" in d.headline
    by = {v.name: v for v in d.candidates}
    assert by["dtm"].qualified and not by["l2"].qualified


def test_of_two_methods_that_beat_the_line_the_one_keeping_more_knowledge_is_chosen(tmp_path):
    rd = decide(write_run(tmp_path, {"dtm": (0.66, 0.78, 0.03), "dtm_long": (0.67, 0.86, 0.03)}))
    assert rd.decision.choice == "dtm_long"


def test_wise_ft_is_a_point_of_the_line_not_a_method(tmp_path):
    root = write_run(tmp_path, {"wise_ft": LINE["interp_0.5"]})
    (root / "recipes.json").write_text(json.dumps({"wise_ft": {"recipe": "wise_ft",
                                                               "params": {"t": 0.5}}}))
    rd = decide(root)
    assert rd.line["wise_ft"] == 0.5
    assert "wise_ft" not in [v.name for v in rd.decision.candidates]


def test_no_line_verdict_with_fewer_than_three_points(tmp_path):
    line = {k: v for k, v in LINE.items() if k in ("base", "sft")}
    rd = decide(write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02)}, line=line))
    d = rd.decision
    assert d.choice == "sft"
    assert all(p.distance is None and "3 needed" in p.word for p in d.candidates[0].planes)
    assert "the line has 2 measured point(s)" in d.headline


def test_a_plane_where_nothing_moves_is_no_evidence(tmp_path):
    # knowledge identical for every variant: nothing moves there, and without a loss task the
    # method cannot be recommended however its knowledge compares
    flat = {k: (x, 0.80, loss) for k, (x, _, loss) in LINE.items()}
    rd = decide(write_run(tmp_path, {"dtm": (0.66, 0.80, 0.02)}, line=flat, with_loss=False,
                          noise=0.0))
    d = rd.decision
    assert [p["moves"] for p in d.planes] == [False]
    assert d.kind != "method"
    assert "no plane holds evidence" in d.headline


def test_the_decision_never_reads_test_items(tmp_path):
    root = write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02), "l2": (0.65, 0.70, 0.10)})
    before = decide(root).decision.to_dict()
    # scramble every test item of every variant: the choice and its validation numbers hold
    split = decide(root).split
    rng = np.random.default_rng(5)
    for f in (root / "eval").glob("*.json"):
        if f.name == "split.json":
            continue
        data = json.loads(f.read_text())
        for name, task in data["tasks"].items():
            for item in task["items"]:
                if split.part(name, item["doc_id"]) == "test":
                    item["score"] = float(rng.random() < 0.5)
                    if "loglikelihood" in item:
                        item["loglikelihood"] *= 1 + rng.random()
        f.write_text(json.dumps(data))
    assert decide(root).decision.to_dict() == before


def test_a_run_without_a_split_is_split_by_the_decision_and_says_so(tmp_path):
    rd = decide(write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02)}, split=None))
    assert not rd.split_recorded and rd.split.fraction == ANSWER.validation_fraction
    assert any("no item split" in n for n in rd.decision.notes)


def test_confirmation_on_test_items_is_not_dominated_by_the_line(tmp_path):
    root = write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02)})
    rd = decide(root)
    c = confirm(RunDir(root), rd, n_boot=600)
    assert c.choice == "dtm" and c.missing is None
    assert {r.point for r in c.rows} == set(LINE)
    assert c.dominated == []
    assert c.line_distance["knowledge"].low > 0
    assert sum(c.items.values()) < 3 * 400  # test items only


def test_confirmation_names_a_dominating_line_point(tmp_path):
    # forced: the user names a target only SFT-level models meet; ties_x4 is worse than SFT on
    # knowledge at the same instruction following, so SFT dominates it on test items
    root = write_run(tmp_path, {"ties_x4": (0.66, 0.45, 0.15)})
    rd = decide(root)
    rd.decision.choice = "ties_x4"
    c = confirm(RunDir(root), rd, n_boot=600)
    assert any(d.startswith("sft") for d in c.dominated)
    # the report's table: one row per measured line point, the dominating one marked
    from dtmerge.report.sections.answer import confirmation_table

    table = confirmation_table(c)
    by_point = {row[0]: row for row in table.rows}
    assert set(by_point) == {r.point for r in c.rows}
    assert by_point["sft"][-1].startswith("yes (knowledge")
    assert table.headers[1].startswith("instruction following")
    assert "knowledge" in table.headers[2]


def test_confirmation_table_says_no_line_point_dominates_a_clear_winner(tmp_path):
    from dtmerge.report.sections.answer import confirmation_table

    root = write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02)})
    c = confirm(RunDir(root), decide(root), n_boot=600)
    table = confirmation_table(c)
    assert [row[-1] for row in table.rows] == ["no"] * len(c.rows)
    assert "test items" in table.caption


def test_holm_steps_down():
    assert holm({"a": 0.01, "b": 0.02, "c": 0.04}, 0.05) == {"a", "b", "c"}
    assert holm({"a": 0.01, "b": 0.03, "c": 0.04}, 0.05) == {"a"}
    assert holm({"a": 0.03, "b": 0.04}, 0.05) == set()
    assert holm({"a": 0.001, "b": 0.03}, 0.05) == {"a", "b"}


def test_max_knowledge_needs_a_level():
    with pytest.raises(ValueError, match="min_instruction"):
        AnswerConfig(target="max_knowledge")
    assert AnswerConfig(target="0.6").target == 0.6
    with pytest.raises(ValueError, match="answer.target"):
        AnswerConfig(target="best")


def test_seed_replicates_enter_the_decision_and_are_named(tmp_path):
    root = write_run(tmp_path, {"dtm": (0.66, 0.85, 0.02)})
    for k in (1, 2):  # the pipeline's seed replicates: the same items, another training seed
        write_run(root / "seeds" / f"seed{k}", {"dtm": (0.66, 0.84, 0.02)},
                  line={n: v for n, v in LINE.items() if n != "base"}, split=None)
    d = decide(root).decision
    assert d.seeds["dtm"] == 3 and d.seeds["sft"] == 3 and d.seeds["base"] == 1
    assert d.choice == "dtm" and "3 training seeds; seed and item noise" in d.headline
    single = decide(write_run(tmp_path / "one", {"dtm": (0.66, 0.85, 0.02)})).decision
    assert "one training seed; item noise only" in single.notes[0]


def test_seed_config_shifts_every_training_seed_and_skips_the_base(tmp_path):
    from dtmerge.config import RunConfig
    from dtmerge.pipeline import seed_config

    cfg = RunConfig.model_validate({
        "name": "r", "runs_dir": str(tmp_path), "seeds": 3, "model": {"path": "m"},
        "data": {"path": "d.jsonl"}, "train": {"seed": 5}, "disperse": {"seed": 2},
        "eval": {"variants": ["base", "sft", "dtm", "interpolation", "dtm_long"]}})
    rep = seed_config(cfg, 2)
    stride = 10_007  # far above any seed a recipe derives (soup member i: seed + i + 1)
    assert (rep.train.seed, rep.disperse.seed, rep.seed, rep.seeds) == (
        5 + 2 * stride, 2 + 2 * stride, 2 * stride, 1)
    soups = [seed_config(cfg, k).train.seed + i + 1 for k in range(3) for i in range(64)]
    assert len(set(soups) | {seed_config(cfg, k).train.seed for k in range(3)}) == 3 * 65
    assert rep.run_dir == tmp_path / "r" / "seeds" / "seed2"
    assert rep.eval.variants == ["sft", "dtm", "interpolation"]
    assert rep.data == cfg.data and rep.eval.tasks == cfg.eval.tasks


def test_sft_by_default_names_the_line_point_the_items_could_not_prove(tmp_path):
    # interp_0.75 answers SFT's instruction items but for a few flips either way: its
    # difference to SFT is about -0.02 with an interval far wider than the 0.05 margin
    root = write_run(tmp_path, {"dtm": (0.40, 0.70, 0.10)})
    sft = json.loads((root / "eval" / "sft.json").read_text())
    path = root / "eval" / "interp_0.75.json"
    data = json.loads(path.read_text())
    items = [dict(it) for it in sft["tasks"]["follow"]["items"][:60]]
    ones = [i for i, it in enumerate(items) if it["score"] == 1.0]
    zeros = [i for i, it in enumerate(items) if it["score"] == 0.0]
    for i in ones[:6]:
        items[i]["score"] = 0.0
    for i in zeros[:5]:
        items[i]["score"] = 1.0
    data["tasks"]["follow"]["items"] = items
    path.write_text(json.dumps(data))
    d = decide(root).decision
    assert d.choice == "sft", d.headline
    assert "interp_0.75 might meet it" in d.headline and "answer.margin" in d.headline


def test_compare_states_each_runs_decision_and_compares_what_they_ship(tmp_path, capsys):
    from dtmerge.cli.main import main
    from dtmerge.config import ReportConfig

    a = write_run(tmp_path / "a", {"dtm": (0.66, 0.85, 0.02)})  # beats the line: ships dtm
    b = write_run(tmp_path / "b", {"dtm": (0.58, 0.80, 0.05)})  # does not: trains less
    heads = {n: decide_run(RunDir(r), ANSWER, n_boot=ReportConfig().bootstrap_samples).decision
             for n, r in (("a", a), ("b", b))}  # as compare decides a run without config.yaml
    assert heads["a"].choice == "dtm" and heads["b"].choice != "dtm"
    out = tmp_path / "cmp.json"
    assert main(["compare", str(a), str(b), "--variant", "answer", "--bootstrap", "200",
                 "--json", str(out)]) in (0, 1)
    printed = capsys.readouterr().out
    assert f"A's run decides: {heads['a'].headline}" in printed
    assert f"B's run decides: {heads['b'].headline}" in printed
    compared = json.loads(out.read_text())
    assert compared["a"].endswith("eval/dtm.json")
    assert compared["b"].endswith(f"eval/{heads['b'].choice}.json")
    # comparing another variant still states the decision, and says what was compared
    main(["compare", str(a), str(b), "--bootstrap", "200"])
    assert f"B's run decides (compared here: dtm): {heads['b'].headline}" in capsys.readouterr().out
