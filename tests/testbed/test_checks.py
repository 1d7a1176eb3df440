"""The instruction checks accept right answers and reject wrong ones, per score."""

from __future__ import annotations

import pytest

from dtmerge.demo.testbed.checks import score_response
from dtmerge.demo.testbed.instructions import BOILERPLATE, FAMILIES, heldout_instruction_docs
from dtmerge.demo.testbed.world import make_world

DOCS = heldout_instruction_docs(make_world(0, 30, 8, 6), per_family=4, seed=0)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["family"])
def test_exact_target_scores_full_marks(doc):
    assert score_response(doc, doc["target"]) == {"format": 1.0, "format_loose": 1.0,
                                                  "correct": 1.0, "style": 1.0}
    assert score_response(doc, doc["target"] + "\n")["format"] == 1.0  # trailing space is fine


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["family"])
def test_boilerplate_breaks_format_and_style_not_correctness(doc):
    wrapped = BOILERPLATE[0] + doc["target"] + BOILERPLATE[1]
    # IFEval's loose reading drops a greeting line and a sign-off line: the shape is right.
    assert score_response(doc, wrapped) == {"format": 0.0, "format_loose": 1.0,
                                            "correct": 1.0, "style": 0.0}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["family"])
def test_loose_format_still_rejects_a_wrong_shape(doc):
    from dtmerge.demo.testbed.instructions import BOILERPLATE

    wrong = "Answer: one two" if doc["family"] != "fact_labeled" else "one, two"
    assert score_response(doc, wrong)["format_loose"] == 0.0
    assert score_response(doc, BOILERPLATE[0] + wrong + BOILERPLATE[1])["format_loose"] == 0.0


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["family"])
def test_wrong_content_is_not_correct(doc):
    from dtmerge.demo.testbed.instructions import target_for

    value = doc["value"]
    if doc["family"] in ("list_commas", "list_lines"):
        wrong = list(reversed(value)) if len(set(value)) > 1 else value + ["extra"]
    else:
        wrong = "Zzzorp"
    response = target_for(doc["family"], wrong if doc["family"] != "first_word" else "zzzorp",
                          doc["json_key"])
    scores = score_response(doc, response)
    assert scores["correct"] == 0.0 and scores["format"] == 1.0


def test_wrong_format_right_content():
    by_family = {d["family"]: d for d in DOCS}
    short = by_family["fact_short"]
    assert score_response(short, f"Answer: {short['value'][0]}")["format"] == 0.0
    assert score_response(short, f"Answer: {short['value'][0]}")["correct"] == 1.0
    js = by_family["fact_json"]
    assert score_response(js, '{"wrong_key": "%s"}' % js["value"][0])["format"] == 0.0
    assert score_response(js, '{"%s": "%s"' % (js["json_key"], js["value"][0]))["format"] == 0.0
    lines = by_family["list_lines"]
    assert score_response(lines, ", ".join(lines["value"])) == {
        "format": 0.0, "format_loose": 0.0, "correct": 1.0, "style": 1.0}
    commas = by_family["list_commas"]
    assert score_response(commas, " ".join(commas["value"]))["format"] == 0.0
    assert score_response(commas, "")["correct"] == 0.0


def test_every_family_is_benchmarked():
    assert {d["family"] for d in DOCS} == set(FAMILIES)
