"""A built model is rebuilt when an input of its build changes or when it is deleted, and a
build reads every merge setting it is given (tiny LoRA sub-models, CPU)."""

import pytest
import torch

from recipe_helpers import records, write_jsonl

from dtmerge.config import config_from_dict
from dtmerge.recipes import resolve_recipes
from dtmerge.rundir import RunDir, hash_path

TRAIN = {"method": "lora", "max_steps": 2, "batch_size": 2, "grad_accum": 1, "warmup_steps": 0,
         "learning_rate": 5e-2, "max_length": 128, "save_steps": 100, "logging_steps": 1,
         "lora": {"r": 4, "alpha": 8}, "sft_baseline": False}


@pytest.fixture
def make_run(tmp_path, tiny_model_dir):
    """(cfg, run) of a run with data in place; `merge` is the run's merge section."""
    def make(recipes, merge=None):
        cfg = config_from_dict({
            "name": "r", "runs_dir": str(tmp_path / "runs"), "model": {"path": str(tiny_model_dir)},
            "data": {"path": "unused.jsonl"}, "disperse": {"num_portions": 2}, "train": TRAIN,
            "merge": merge or {}, "recipes": recipes,
            "eval": {"variants": ["base"]}})  # the interpolation line is not what is tested
        run = RunDir(cfg.run_dir)
        if not run.all_data.exists():
            write_jsonl(run.all_data, records(8))
            for k in range(2):
                write_jsonl(run.portion("dtm", k), records(8)[k::2])
        return cfg, run
    return make


def build_all(cfg, run, log=lambda _m: None) -> list[str]:
    """Prepare, train and build every recipe of `cfg`; the log lines."""
    from dtmerge.recipes.stages import build_stage, prepare_stage, train_stage

    logs = []
    for stage in (prepare_stage, train_stage, build_stage):
        stage(cfg, run, log=logs.append)
    return logs


def model_hash(model_dir) -> dict:
    """The model's files by content, leaving out the merge record (it holds the merge's time)."""
    return {p.name: hash_path(p) for p in sorted(model_dir.iterdir())
            if p.name != "merge_record.json"}


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


EXTRA_DTM = [{"name": "dtm", "label": "dtm-b"}]


def test_changing_merge_params_rebuilds_an_extra_dtm(make_run):
    torch.set_num_threads(1)
    cfg, run = make_run(EXTRA_DTM, {"method": "ties", "params": {"density": 0.3}})
    build_all(cfg, run)
    before = model_hash(run.model("dtm-b"))
    cfg2, _ = make_run(EXTRA_DTM, {"method": "ties", "params": {"density": 0.9}})
    logs = build_all(cfg2, run)
    assert any("[redo] merge:dtm-b" in m for m in logs), logs
    assert model_hash(run.model("dtm-b")) != before
    assert not any("[redo] train:" in m or "[train]" in m for m in logs)  # sub-models kept


def test_changing_merge_weights_or_shard_size_rebuilds_an_extra_dtm(make_run):
    torch.set_num_threads(1)
    cfg, run = make_run(EXTRA_DTM)
    build_all(cfg, run)
    for merge in ({"weights": [0.8, 0.2]}, {"weights": [0.8, 0.2], "shard_size": "1GB"}):
        logs = build_all(make_run(EXTRA_DTM, merge)[0], run)
        assert any("[redo] merge:dtm-b" in m for m in logs), (merge, logs)
    assert any("[skip] merge:dtm-b" in m for m in build_all(make_run(EXTRA_DTM, merge)[0], run))


def test_an_extra_dtm_applies_base_interpolation(make_run, tiny_model_dir):
    torch.set_num_threads(1)
    cfg, run = make_run(EXTRA_DTM)
    build_all(cfg, run)
    full = _weights(run.model("dtm-b"))
    build_all(make_run(EXTRA_DTM, {"base_interpolation": 0.5})[0], run)
    half, base = _weights(run.model("dtm-b")), _weights(tiny_model_dir)
    moved = [k for k in full if not torch.equal(full[k], base[k])]
    assert moved  # the sub-models changed some weights
    for k in moved:
        torch.testing.assert_close(half[k], base[k] + 0.5 * (full[k] - base[k]))


def test_an_extra_dtm_writes_an_adapter_when_asked(make_run):
    torch.set_num_threads(1)
    cfg, run = make_run(EXTRA_DTM, {"as_adapter": True})
    build_all(cfg, run)
    assert (run.model("dtm-b") / "adapter_config.json").exists()


def test_a_deleted_extra_dtm_is_rebuilt(make_run):
    import shutil

    torch.set_num_threads(1)
    cfg, run = make_run(EXTRA_DTM)
    build_all(cfg, run)
    before = model_hash(run.model("dtm-b"))
    shutil.rmtree(run.model("dtm-b"))
    logs = build_all(cfg, run)
    assert any("[redo] merge:dtm-b" in m and "is gone" in m for m in logs), logs
    assert model_hash(run.model("dtm-b")) == before  # the same merge, made again



BUILDERS = [{"name": "sft"}, {"name": "wise_ft"}, {"name": "uniform_soup", "num_models": 2},
            {"name": "dtm", "label": "dtm-b"}, {"name": "ensemble", "of": "dtm-b"}]


def test_every_deleted_built_model_is_rebuilt_and_nothing_else(make_run):
    import shutil

    torch.set_num_threads(1)
    cfg, run = make_run(BUILDERS)
    build_all(cfg, run)
    steps = {"wise_ft": "build", "uniform_soup": "merge", "dtm-b": "merge", "ensemble": "build"}
    for label, step in steps.items():
        before = model_hash(run.model(label))
        shutil.rmtree(run.model(label))
        logs = build_all(cfg, run)
        redone = [m for m in logs if m.startswith("[redo]")]
        assert len(redone) == 1 and f"[redo] {step}:{label}" in redone[0], (label, logs)
        assert "is gone" in redone[0]
        assert model_hash(run.model(label)) == before, label  # the same build, made again


def test_deleted_prepared_data_is_made_again(make_run, text_file):
    torch.set_num_threads(1)
    recipes = [{"name": "dtm", "label": "dtm-b"}, {"name": "replay", "text": str(text_file)},
               {"name": "curated", "column": "score"}]
    cfg, run = make_run(recipes)
    from dtmerge.data.jsonl import read_jsonl

    write_jsonl(run.all_data, [{**r, "score": i} for i, r in enumerate(read_jsonl(run.all_data))])
    prepared = {"disperse:dtm-b": run.data_dir / "dtm-b" / "portion_1.jsonl",
                "prepare:replay": run.data_dir / "replay" / "mixed.jsonl",
                "prepare:curated": run.data_dir / "curated" / "scores.json"}
    for recipe in resolve_recipes(cfg):
        recipe.prepare(run, lambda _m: None)
    for job, path in prepared.items():
        path.unlink()
        logs = []
        for recipe in resolve_recipes(cfg):
            recipe.prepare(run, logs.append)
        assert [m for m in logs if m.startswith("[redo]")] == [
            f"[redo] {job}: done before, but its output {path} is gone; making it again"], logs
        assert path.exists()
