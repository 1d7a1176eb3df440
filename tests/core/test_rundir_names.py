"""Where the run directory keeps each dtm entry's portions and sub-models: one spelling."""

import re
from pathlib import Path

import dtmerge
from dtmerge.rundir import RunDir, sub_model_name


def test_own_and_extra_dtm_portions_and_sub_models(tmp_path):
    run = RunDir(tmp_path)
    assert run.portion("dtm", 2) == tmp_path / "data" / "portion_2.jsonl"
    assert run.sub_model("dtm", 2) == tmp_path / "models" / "sub_2"
    assert run.portion("dtm-k2", 0) == tmp_path / "data" / "dtm-k2" / "portion_0.jsonl"
    assert run.sub_model("dtm-k2", 1) == tmp_path / "models" / "dtm-k2_sub_1"
    assert sub_model_name("dtm-k2", 1) == "dtm-k2_sub_1"


def test_the_sub_model_name_is_spelled_in_one_place():
    src = Path(dtmerge.__file__).parent
    homes = [str(p.relative_to(src)) for p in sorted(src.rglob("*.py"))
             if re.search(r"sub_\{", p.read_text())]
    assert homes == ["rundir.py"]
