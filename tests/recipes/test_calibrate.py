"""`coef: auto` for l2 and ewc: a short sweep chosen on the held-out instruction data, recorded
for the report, resumable, and giving a model that differs from SFT (tiny models, CPU)."""

import json

import pytest
import torch

from recipe_helpers import records, write_jsonl

from dtmerge.errors import ConfigError
from dtmerge.recipes import resolve_recipes
from dtmerge.recipes.calibrate import choose, read_calibration
from dtmerge.recipes.stages import build_stage, prepare_stage, train_stage
from dtmerge.rundir import RunDir


def _runs(losses: dict[float, float]) -> list[dict]:
    return [{"ratio": c, "coef": c, "heldout_loss": loss} for c, loss in losses.items()]


def test_choose_takes_the_largest_coefficient_that_still_learns_the_instructions():
    # base 3.0, unpenalised 1.0: tolerance 0.2 allows up to 1.4
    picked = choose(_runs({0.1: 1.01, 1.0: 1.2, 10.0: 1.6, 100.0: 2.9}), 3.0, 1.0, 0.2)
    assert picked["coef"] == 1.0 and picked["heldout_limit"] == pytest.approx(1.4)
    assert len(picked["sweep"]) == 4
    strict = choose(_runs({0.1: 1.01, 1.0: 1.2, 10.0: 1.6}), 3.0, 1.0, 0.05)
    assert strict["coef"] == 0.1


def test_choose_says_when_no_coefficient_qualifies_or_the_grid_top_does():
    none = choose(_runs({1.0: 2.0, 10.0: 2.5}), 3.0, 1.0, 0.2)
    assert none["coef"] == 1.0 and "no coefficient" in none["reason"]
    top = choose(_runs({1.0: 1.0, 10.0: 1.1}), 3.0, 1.0, 0.2)
    assert top["coef"] == 10.0 and "grid's largest" in top["reason"]


def test_auto_without_heldout_data_is_a_clear_config_error(make_cfg):
    cfg = make_cfg([{"name": "l2"}])
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval_fraction": 0.0})})
    with pytest.raises(ConfigError, match="data.eval_fraction"):
        resolve_recipes(cfg)
    assert resolve_recipes(make_cfg([{"name": "l2", "coef": 2.0}]))  # a number needs no split


def _sq_norm(adapter_dir):
    from safetensors.torch import load_file

    conf = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = conf["lora_alpha"] / conf["r"]
    ad = load_file(adapter_dir / "adapter_model.safetensors")
    return sum((scale * ad[k.replace("lora_A", "lora_B")] @ a).pow(2).sum().item()
               for k, a in ad.items() if "lora_A" in k)


def test_auto_picks_a_coefficient_records_the_sweep_and_trains_a_model_unlike_sft(
        run_with_data, text_file):
    torch.set_num_threads(1)
    grid = [0.01, 1.0, 100.0]
    cfg, run = run_with_data([{"name": "sft"}, {"name": "l2", "auto_grid": grid},
                              {"name": "ewc", "text": str(text_file), "docs": 3,
                               "auto_grid": grid, "auto_fraction": 0.5}],
                             n=12, max_steps=8, learning_rate=3e-2)
    write_jsonl(run.heldout_data, records(20)[12:])
    logs: list[str] = []
    for stage in (prepare_stage, train_stage, build_stage):
        stage(cfg, run, log=logs.append)
    sft_norm = _sq_norm(run.model("sft"))
    for label, steps in (("l2", 2), ("ewc", 4)):
        record = read_calibration(run, label)
        assert record["sweep_steps"] == steps and record["recipe_steps"] == 8
        sweep = record["sweep"]
        assert [r["ratio"] for r in sweep] == grid
        coefs = [r["coef"] for r in sweep]
        assert coefs == sorted(coefs) and coefs[0] > 0
        for r in sweep:  # every run measured on the held-out data, with the penalty's share
            assert r["heldout_loss"] > 0 and 0 < r["penalty_share"] < 1
        shares = [r["penalty_share"] for r in sweep]
        assert shares[-1] > shares[0]  # a stronger coefficient, a larger share of the loss
        assert record["coef"] in coefs
        limit = record["heldout_limit"]
        assert [r["coef"] for r in sweep if r["heldout_loss"] <= limit][-1:] in ([record["coef"]], [])
        job = run.job(f"train:{label}")
        assert job["status"] == "done"
        described = json.loads((run.root / "recipes.json").read_text())[label]
        assert described["coef"] == record["coef"] and described["calibration"]["sweep"] == sweep
        assert 0 < described["penalty_share"] < 1
        # the penalised model is not SFT: its update is smaller
        assert _sq_norm(run.model(label)) < sft_norm
        for i in range(len(grid)):
            assert run.job(f"calibrate_{i}:{label}")["status"] == "done"
        assert not (run.root / "calibration" / label / "coef_0").exists()  # measured, deleted

    # a rerun finds every sweep run and the trained models done: nothing is redone
    again: list[str] = []
    prepare_stage(cfg, run, log=again.append)
    assert train_stage(cfg, run, log=again.append)["trained"] == []
    assert not any("[redo]" in m for m in again)
    assert sum("[skip] calibrate_" in m for m in again) == 2 * (len(grid) + 2)  # + base, ref


def test_the_recipes_section_states_the_chosen_coefficient_and_the_sweep():
    from dtmerge.report.sections.recipes import strength_sentences

    cal = choose(_runs({0.5: 1.05, 5.0: 1.3, 50.0: 2.0}), 3.0, 1.0, 0.2)
    for r, share in zip(cal["sweep"], (0.01, 0.08, 0.4)):
        r["penalty_share"] = share
    cal.update({"reference": {"heldout_loss": 1.0}, "base_heldout_loss": 3.0,
                "sweep_steps": 20, "recipe_steps": 100})
    text = strength_sentences({"sft": {"recipe": "sft"},
                               "l2": {"recipe": "l2", "coef": 5.0, "calibration": cal,
                                      "penalty_share": 0.07},
                               "ewc": {"recipe": "ewc", "coef": 0.1}})
    assert len(text) == 2
    assert text[0].startswith("l2 trained with coef 5 (penalty 7.0% of its final loss), chosen by "
                              "coef: auto")
    assert "5: 1.3000 (penalty 8.0%)" in text[0] and "20 of 100 steps" in text[0]
    assert text[1] == "ewc trained with coef 0.1 (as configured)."


def test_the_sweep_run_side_by_side_in_a_pool_equals_the_sweep_one_after_another(run_with_data):
    """The grid's runs are independent: two at a time in the process pool (one thread each)
    give the record the in-process runs give with one thread."""
    records_by_way = {}
    for jobs in (1, 2):
        cfg, run = run_with_data([{"name": "l2", "auto_grid": [0.1, 10.0], "auto_fraction": 0.5}],
                                 n=12, max_steps=8,
                                 learning_rate=3e-2, parallel_jobs=jobs, threads_per_job=1)
        cfg = cfg.model_copy(update={"name": f"{cfg.name}-{jobs}"})  # a run of its own
        run = RunDir(cfg.run_dir)
        write_jsonl(run.all_data, records(12))
        write_jsonl(run.heldout_data, records(20)[12:])
        prepare_stage(cfg, run, log=lambda message: None)
        records_by_way[jobs] = read_calibration(run, "l2")
        for i in range(2):
            assert run.job(f"calibrate_{i}:l2")["status"] == "done"
    one, pooled = (records_by_way[k] for k in (1, 2))
    assert [r["heldout_loss"] for r in pooled["sweep"]] == [r["heldout_loss"] for r in one["sweep"]]
    assert pooled["coef"] == one["coef"]
    assert pooled["sweep"][0]["seconds"] != one["sweep"][0]["seconds"]  # each ran its own sweep
