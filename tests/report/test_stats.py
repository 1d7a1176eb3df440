"""The paired bootstrap on cases with a known answer."""

import numpy as np
import pytest

from dtmerge.evaluate.stats import (
    normal_interval, paired_bootstrap, paired_by_id, standard_error, unpaired_normal,
)


def test_identical_scores_give_a_zero_interval_and_p_one():
    x = np.random.default_rng(0).random(50)
    d = paired_bootstrap(x, x, n_boot=500)
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0)
    assert d.p_value == 1.0
    assert not d.significant and d.mark() == ""


def test_constant_shift_gives_the_exact_interval():
    x = np.random.default_rng(1).random(40)
    d = paired_bootstrap(x, x + 0.25, n_boot=500)
    assert d.low == pytest.approx(0.25) and d.high == pytest.approx(0.25)
    assert d.significant and d.mark() == "▲"
    assert d.p_value == pytest.approx(1 / 501)  # add-one smoothed: never exactly zero


def test_large_sample_matches_the_normal_approximation():
    rng = np.random.default_rng(2)
    a = (rng.random(4000) < 0.6).astype(float)
    b = np.where(rng.random(4000) < 0.8, a, 1 - a)  # b = a with 20% of items flipped
    d = paired_bootstrap(a, b, n_boot=2000, seed=3)
    lo, hi = normal_interval(d.mean, standard_error(b - a))
    assert d.low == pytest.approx(lo, abs=0.003)
    assert d.high == pytest.approx(hi, abs=0.003)


def test_seeded_and_reproducible():
    rng = np.random.default_rng(4)
    a, b = rng.random(30), rng.random(30)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)


def test_pairs_by_doc_id_not_by_position():
    a = {0: 1.0, 1: 0.0, 2: 1.0, 3: 0.0}
    b = {3: 0.0, 2: 1.0, 1: 0.0, 0: 1.0, 99: 1.0}  # same answers, other order, one extra item
    d = paired_by_id(a, b, n_boot=200)
    assert d.n == 4 and d.mean == 0.0 and d.high == 0.0
    assert paired_by_id({0: 1.0}, {1: 1.0}) is None


def test_bad_inputs_and_the_unpaired_fallback():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
    d = unpaired_normal(0.5, 0.03, 0.4, 0.04)
    assert d.method == "normal"
    assert d.stderr == pytest.approx(0.05)
    assert d.low == pytest.approx(-0.1 - 1.96 * 0.05, abs=1e-3)
