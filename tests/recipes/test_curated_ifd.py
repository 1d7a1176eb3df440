"""`curated` by IFD drops the pairs whose instruction does not help (IFD >= 1) before ranking."""

import json
import math

import pytest

from recipe_helpers import records

from dtmerge.errors import DataError
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.curated import Curated, top_fraction, uninformative


def test_uninformative_pairs_are_those_with_ifd_of_one_or_more():
    assert uninformative([0.2, 1.0, 1.7, 0.999, math.inf, math.nan]) == [1, 2, 4, 5]


def test_dropped_pairs_are_left_out_before_ranking():
    scores = [1.2, 0.9, 0.5, 1.0, 0.7, 0.3]
    assert top_fraction(scores, 0.5) == [0, 1, 3]  # by score alone the two IFD >= 1 would lead
    assert top_fraction(scores, 0.5, frozenset(uninformative(scores))) == [1, 2, 4]
    assert top_fraction([1.5, 0.4, 1.1, 0.2], 0.75, frozenset({0, 2})) == [1, 3]  # fewer remain


def _prepare_with_ifd(run_with_data, monkeypatch, ifd, column=None):
    cfg, run = run_with_data([{"name": "curated", "fraction": 0.5,
                               **({"column": column} if column else {})}], n=len(ifd))
    monkeypatch.setattr(Curated, "scores", lambda self, recs: list(ifd))
    (curated,) = resolve_recipes(cfg)
    logs = []
    curated.prepare(run, log=logs.append)
    return curated, run, logs


def test_curated_by_ifd_never_keeps_a_pair_with_ifd_of_one_or_more(run_with_data, monkeypatch):
    ifd = [1.3, 0.8, 0.4, 1.0, 0.9, 0.2, 2.5, 0.6]
    curated, run, logs = _prepare_with_ifd(run_with_data, monkeypatch, ifd)
    saved = json.loads((run.data_dir / "curated" / "scores.json").read_text())
    assert saved["dropped"] == [0, 3, 6]
    assert saved["kept"] == [1, 2, 4, 7]  # the 4 highest IFD below 1
    kept = [json.loads(x) for x in curated.data_file(run).read_text().splitlines()]
    assert kept == [records(8)[i] for i in saved["kept"]]
    assert any("3 with IFD >= 1 dropped first" in m for m in logs)


def test_curated_says_so_when_every_pair_has_ifd_of_one_or_more(run_with_data, monkeypatch):
    with pytest.raises(DataError, match="every one of the 4 training examples has IFD >= 1"):
        _prepare_with_ifd(run_with_data, monkeypatch, [1.0, 1.2, 3.0, 1.1])


def test_a_user_column_is_ranked_as_given(run_with_data, monkeypatch):
    curated, run, _ = _prepare_with_ifd(run_with_data, monkeypatch, [3.0, 0.5, 2.0, 0.1],
                                        column="quality")
    saved = json.loads((run.data_dir / "curated" / "scores.json").read_text())
    assert saved["kept"] == [0, 2] and saved["dropped"] == []
