"""Catalogue cases 6, 7, 9, 10, 12 and the two extras (resume message, merge debris), plus
`dtm merge RUN_DIR` honouring every flag."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from dtmerge.cli.main import build_parser, main
from dtmerge.config import load_config
from dtmerge.data import prepare_data
from dtmerge.errors import MergeError, TrainingError
from dtmerge.merge import merge_models
from dtmerge.rundir import RunDir
from dtmerge.train.trainer import train_model
from tiny import build_tiny_model_dir

torch.set_num_threads(1)


# -- case 6: non-UTF-8 data


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_non_utf8_data_names_file_line_and_column(make_config, tmp_path, capsys, suffix):
    bad = tmp_path / f"latin1{suffix}"
    lines = ['{"instruction": "a", "output": "b"}', '{"instruction": "caf\xe9", "output": "b"}']
    text = "\n".join(lines) if suffix == ".jsonl" else "[" + ",\n".join(lines) + "]"
    bad.write_bytes(text.encode("latin-1"))
    assert main(["run", str(make_config(data={"path": str(bad)})), "--stages", "data"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: not UTF-8 text (byte 0xe9 at column " in err
    assert "re-save the file as UTF-8" in err and "Traceback" not in err


# -- case 7: truncation is counted


def test_data_summary_counts_examples_longer_than_max_length(make_config, tmp_path):
    data = tmp_path / "long.jsonl"
    rows = [{"instruction": "where is alice born", "output": "paris"}] * 9
    rows.append({"instruction": "where is alice born", "output": "paris " * 400})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(make_config(data={"path": str(data), "eval_fraction": 0.0},
                                  train={"max_length": 200}))
    logs = []
    summary = prepare_data(cfg, RunDir(cfg.run_dir), log=logs.append)
    assert summary["truncated"] == 1 and summary["max_length"] == 200
    assert ("data: 1 of 10 training examples are longer than train.max_length=200 tokens and will "
            "be cut to it (raise train.max_length to keep them whole)") in logs


# -- case 9: a hidden-size mismatch names the hidden size


def test_hidden_size_mismatch_is_named(tmp_path, tiny_model_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig.from_pretrained(tiny_model_dir)
    cfg.hidden_size = 64
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "wide")
    with pytest.raises(MergeError) as err:
        merge_models(tiny_model_dir, [tmp_path / "wide"], tmp_path / "out")
    assert str(err.value) == (f"hidden_size differs: base {tiny_model_dir} has 32 but "
                              f"{tmp_path / 'wide'} has 64: models of different sizes cannot "
                              "be merged")


# -- case 10: NaN names the input


def test_nan_in_a_merge_names_the_input_model(tmp_path, tiny_model_dir):
    good = build_tiny_model_dir(tmp_path / "good", seed=1)
    bad = build_tiny_model_dir(tmp_path / "bad", seed=2)
    weights = load_file(bad / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    weights[name][3, 5] = float("nan")
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MergeError) as err:
        merge_models(tiny_model_dir, [good, bad], tmp_path / "out", method="task_arithmetic")
    assert str(err.value) == (f"merging tensor '{name}' gave NaN or inf values: input model(s) "
                              f"{bad} hold NaN/inf values there (a diverged training?): retrain "
                              "or drop them")
    assert not (tmp_path / "out").exists()


# -- extra: a killed merge's scratch folders


def test_merge_removes_scratch_folders_of_dead_merges_only(tmp_path, tiny_model_dir):
    m = build_tiny_model_dir(tmp_path / "m", seed=1)
    dead = tmp_path / ".dtm-merge-999999999-abc"
    live = tmp_path / f".dtm-merge-{os.getppid()}-xyz"
    dead.mkdir()
    live.mkdir()
    merge_models(tiny_model_dir, [m], tmp_path / "out")
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.glob(".dtm-merge-*")) == [live.name]


# -- case 12 and the resume extra: training guards


def _train_cfg(make_config, **train):
    return load_config(make_config(train={"logging_steps": 1, **train}))


def _portion(tmp_path, n=8):
    path = tmp_path / "portion.jsonl"
    path.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"where is alice born {i}"}],
        "completion": [{"role": "assistant", "content": "alice is born in paris"}]}) + "\n"
        for i in range(n)))
    return path


def test_exploded_weights_keep_the_job_unfinished(make_config, tmp_path):
    cfg = _train_cfg(make_config, learning_rate=1e8, max_steps=2)
    out = tmp_path / "runs" / "r" / "models" / "sub_0"
    with pytest.raises(TrainingError) as err:
        train_model(cfg, _portion(tmp_path), out, "sub_0")
    assert re.fullmatch(r"sub_0: trained weight '.+' is exploded \(max \|w\| = \S+, over \S+\) "
                        r"after training, so the job is not saved: lower train.learning_rate "
                        r"\(now 1e\+08\) and rerun", str(err.value)), str(err.value)
    assert not out.exists()


def test_a_loss_that_never_falls_is_flagged():
    from dtmerge.train.trainer import loss_never_fell

    assert loss_never_fell([{"loss": 2.0}, {"loss": 2.1}, {"loss": 2.0}]) == (
        "training loss never fell below its first value (2; last 2 over 3 logged steps): "
        "check train.learning_rate")
    assert loss_never_fell([{"loss": 2.0}, {"loss": 1.5}, {"loss": 1.2}]) is None


def test_resumed_training_says_from_which_step(make_config, tmp_path, capsys):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt  # killed after checkpoint-1 was saved

    cfg = _train_cfg(make_config, max_steps=3, save_steps=1)
    out = tmp_path / "runs" / "r" / "models" / "sub_1"
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, _portion(tmp_path), out, "sub_1", callbacks=[Crash()], fingerprint="f")
    capsys.readouterr()
    info = train_model(cfg, _portion(tmp_path), out, "sub_1", fingerprint="f")
    assert "[resume] sub_1 from step 1\n" in capsys.readouterr().out
    assert info["steps"] == 3 and out.exists()


# -- dtm merge RUN_DIR honours every flag


def _merge_args(*argv):
    parser, _ = build_parser(["merge"])
    return parser.parse_args(["merge", *argv])


def test_merge_run_dir_mode_applies_every_flag(make_config, tmp_path):
    from dtmerge.cli.merge import parse_params, run_dir_config

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(load_config(make_config()).to_yaml())
    args = _merge_args(str(run), "--method", "ties", "--weights", "0.3", "0.7", "--param",
                       "density=0.4", "--base-interpolation", "0.5", "--shard-size", "1MB",
                       "--as-adapter")
    m = run_dir_config(args, parse_params(args.param)).merge
    assert (m.method, m.weights, m.params, m.base_interpolation, m.shard_size, m.as_adapter) == \
        ("ties", [0.3, 0.7], {"density": 0.4}, 0.5, "1MB", True)


def test_merge_run_dir_mode_refuses_explicit_mode_flags(make_config, tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(load_config(make_config()).to_yaml())
    assert main(["merge", str(run), "--out", str(tmp_path / "x")]) == 2
    assert ("error: dtm merge RUN_DIR merges the run's own sub-models into models/dtm: --out "
            "belong(s) to the explicit mode") in capsys.readouterr().err


def test_merge_stage_passes_shard_size_and_as_adapter(make_config, tmp_path, monkeypatch):
    import dtmerge.merge.engine as stage
    from dtmerge.recipes import resolve_recipes

    cfg = load_config(make_config(merge={"shard_size": "1MB", "as_adapter": True}))
    run = RunDir(cfg.run_dir)
    for k in range(2):
        (run.model(f"sub_{k}")).mkdir(parents=True)
    seen = {}

    def fake_merge(base, subs, out, options, **kwargs):
        seen.update(shard_size=options.shard_size, as_adapter=options.as_adapter)
        out.mkdir(parents=True)
        return {"method": options.method}

    monkeypatch.setattr(stage, "merge_models", fake_merge)
    next(r for r in resolve_recipes(cfg) if r.label == "dtm").build(run, log=lambda _m: None)
    assert seen["shard_size"] == "1MB" and seen["as_adapter"] is True
