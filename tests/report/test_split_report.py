"""With eval/split.json present the report presents test-item numbers and says so."""

from __future__ import annotations

import json

from dtmerge.evaluate.split import ItemSplit
from dtmerge.report import write_report
from dtmerge.results.records import load_eval_file
from dtmerge.rundir import RunDir
from report_fixtures import make_run


def test_report_numbers_are_on_test_items(tmp_path):
    root = make_run(tmp_path / "r", with_extras=False)
    (root / "eval" / "split.json").write_text(json.dumps({"validation_fraction": 0.4, "seed": 0}))
    out = write_report(RunDir(root), n_boot=200)
    md = open(out["markdown"]).read()
    assert "Validation and test items" in md and "TEST items" in md
    # the Answer comes first and says its numbers are on the test items
    assert md.index("## Answer") < md.index("## Validation and test items")
    assert "(the TEST items: see 'Validation and test items')" in md.split("## Validation")[0]
    split = ItemSplit(0.4, 0)
    dtm = load_eval_file(root / "eval" / "dtm.json").tasks["facts"]
    test_ids = split.ids("facts", list(dtm.items), "test")
    expected = sum(dtm.items[i] for i in test_ids) / len(test_ids)
    assert abs(out["data"]["scores"]["dtm"]["facts"] - expected) < 1e-12
    assert abs(expected - dtm.score) > 0 or len(test_ids) < len(dtm.items)


def test_report_without_split_is_unchanged(tmp_path):
    root = make_run(tmp_path / "r", with_extras=False)
    out = write_report(RunDir(root), n_boot=200)
    md = open(out["markdown"]).read()
    assert "Validation and test items" not in md and "TEST items" not in md
    dtm = load_eval_file(root / "eval" / "dtm.json").tasks["facts"]
    assert out["data"]["scores"]["dtm"]["facts"] == dtm.score
