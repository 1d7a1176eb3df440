"""`recipes:` in the run config: validated up front, defaults equal to today's run."""

import pytest

from dtmerge.errors import ConfigError
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.stages import unique_jobs
from dtmerge.train.job import TrainJob


def test_without_recipes_the_jobs_are_todays(run_with_data):
    cfg, run = run_with_data()
    recipes = resolve_recipes(cfg)
    assert [r.label for r in recipes] == ["dtm", "sft"]
    assert unique_jobs(recipes, run) == [  # names, data and outputs
        TrainJob("sub_0", run.portion("dtm", 0), run.sub_model("dtm", 0)),
        TrainJob("sub_1", run.portion("dtm", 1), run.sub_model("dtm", 1)),
        TrainJob("sft", run.all_data, run.model("sft"))]
    cfg2, _ = run_with_data(sft_baseline=False)
    assert [r.label for r in resolve_recipes(cfg2)] == ["dtm"]


def test_unknown_recipe_gets_a_suggestion(make_cfg):
    with pytest.raises(ConfigError, match=r"unknown recipe.*'replayy'.*Did you mean 'replay'"):
        resolve_recipes(make_cfg([{"name": "replayy"}]))


def test_unknown_parameter_names_recipe_and_allowed_keys(make_cfg):
    with pytest.raises(ConfigError, match=r"recipes\[1\] \(l2\): unknown parameter 'lamda'\. "
                                          r"Parameters of l2: auto_fraction, auto_grid, auto_tolerance, coef"):
        resolve_recipes(make_cfg([{"name": "sft"}, {"name": "l2", "lamda": 0.1}]))
    with pytest.raises(ConfigError, match=r"\(wise_ft\): 't'"):
        resolve_recipes(make_cfg([{"name": "wise_ft", "t": 1.5}]))


def test_duplicate_labels_and_the_default_dtm_fold(make_cfg):
    with pytest.raises(ConfigError, match="label\\(s\\) dtm used twice"):
        make_cfg([{"name": "dtm"}, {"name": "dtm"}])
    with pytest.raises(ConfigError, match="sub_9 name the run's own variants"):
        make_cfg([{"name": "l2", "label": "sub_9"}])
    with pytest.raises(ConfigError, match="recipes.0.label"):
        make_cfg([{"name": "l2", "label": "../x"}])
    cfg = make_cfg([{"name": "dtm", "strategy": "kmeans", "merge_method": "ties"},
                    {"name": "dtm", "num_portions": 3, "label": "dtm-k3"}])
    assert cfg.disperse.strategy == "kmeans" and cfg.merge.method == "ties"
    assert cfg.recipes[0].params == {}  # folded into the sections: one truth
    own, k3 = resolve_recipes(cfg)
    assert own.k == 2 and k3.k == 3
    with pytest.raises(ConfigError, match=r"^config: 1 .*\n  - recipes: dtm sets num_portions=3 "
                                          r"but disperse.num_portions is 2; give it in one place$"):
        make_cfg([{"name": "dtm", "num_portions": 3}])


def test_several_dtm_entries_have_their_own_portions_and_submodels(run_with_data):
    cfg, run = run_with_data([{"name": "dtm"}, {"name": "dtm", "label": "dtm-k3",
                                                "num_portions": 3}])
    own, k3 = resolve_recipes(cfg)
    k3.prepare(run, log=lambda m: None)
    names = [j.name for j in unique_jobs([own, k3], run)]
    assert names == ["sub_0", "sub_1", "dtm-k3_sub_0", "dtm-k3_sub_1", "dtm-k3_sub_2"]
    sizes = [len(k3.portion(run, i).read_text().splitlines()) for i in range(3)]
    assert sum(sizes) == 8 and min(sizes) > 0


def test_replay_and_ewc_say_where_general_text_comes_from(make_cfg, tmp_path):
    for name in ("replay", "ewc"):
        with pytest.raises(ConfigError, match=rf"{name} needs `text:`.*runs/realdata/general.txt"):
            resolve_recipes(make_cfg([{"name": name}]))
        with pytest.raises(ConfigError, match="nope.txt not found"):
            resolve_recipes(make_cfg([{"name": name, "text": str(tmp_path / "nope.txt")}]))


def test_dtm_recipes_lists_parameters(capsys):
    from dtmerge.cli.main import main

    assert main(["recipes", "l2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("l2: `l2`: SFT plus") and "coef (default 'auto')" in out
    assert main(["recipes", "replai"]) == 2
    assert "Did you mean 'replay'" in capsys.readouterr().err


def test_extra_dtm_entries_are_checked_up_front(make_cfg):
    def entry(**params):
        return [{"name": "dtm", "label": "dtm-x", **params}]

    with pytest.raises(ConfigError, match="Did you mean 'kmeans'"):
        resolve_recipes(make_cfg(entry(strategy="kmean")))
    with pytest.raises(ConfigError, match="Did you mean 'ties'"):
        resolve_recipes(make_cfg(entry(merge_method="tie")))
    with pytest.raises(ConfigError, match="strategy 'field' needs `field:`"):
        resolve_recipes(make_cfg(entry(strategy="field")))
    with pytest.raises(ConfigError, match="merge_weights has 2 entries for 3 sub-models"):
        resolve_recipes(make_cfg(entry(num_portions=3, merge_weights=[1, 1])))
