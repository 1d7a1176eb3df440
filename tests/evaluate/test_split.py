"""The validation/test item split: disjoint, covering, stable across runs; and the report on test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dtmerge.config import EvalConfig
from dtmerge.evaluate.split import ItemSplit, doc_indices, record_split, split_of


def _ids():
    return {"facts": list(range(300)), "paper": [f"leaf{j}:{i}" for j in range(2) for i in range(50)]}


def test_split_is_disjoint_and_covers_every_item():
    split = ItemSplit(0.3, seed=1)
    for task, ids in _ids().items():
        val, test = split.ids(task, ids, "validation"), split.ids(task, ids, "test")
        assert not set(val) & set(test)
        assert sorted(map(str, val + test)) == sorted(map(str, ids))
        assert 0.15 < len(val) / len(ids) < 0.45  # about the fraction
    other = ItemSplit(0.3, seed=2)
    assert split.ids("facts", range(300), "validation") != other.ids("facts", range(300),
                                                                       "validation")


def test_split_is_stable_across_runs():
    """Another interpreter (another hash seed) gives the same parts."""
    code = ("import json; from dtmerge.evaluate.split import ItemSplit; "
            "print(json.dumps(ItemSplit(0.3, 1).ids('facts', range(300), 'validation')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "123", **__import__("os").environ}, check=True)
    assert json.loads(out.stdout) == ItemSplit(0.3, 1).ids("facts", range(300), "validation")


def test_doc_indices_for_lm_eval_samples():
    split = ItemSplit(0.5, seed=0)
    samples = doc_indices(split, _ids(), "validation")
    assert set(samples) == {"facts", "leaf0", "leaf1"}
    assert samples["facts"] == sorted(split.ids("facts", range(300), "validation"))
    for leaf in ("leaf0", "leaf1"):
        expected = [int(d.split(":")[1]) for d in split.ids("paper", _ids()["paper"], "validation")
                    if d.startswith(leaf + ":")]
        assert samples[leaf] == expected


def test_config_off_by_default_and_recorded(tmp_path):
    assert split_of(EvalConfig()) is None
    cfg = EvalConfig(validation_fraction=0.25, split_seed=3)
    record_split(cfg, tmp_path)
    assert json.loads((tmp_path / "split.json").read_text()) == {"validation_fraction": 0.25,
                                                                  "seed": 3}
    record_split(EvalConfig(), tmp_path)
    assert not (tmp_path / "split.json").exists()
    with pytest.raises(ValueError):
        EvalConfig(validation_fraction=1.0)
