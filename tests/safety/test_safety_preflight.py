"""Catalogue cases 4, 8, 11, 13, 14: the preflight rejects, before any training, everything a
later stage would reject, and the dry run never says "OK" for what it did not check."""

from __future__ import annotations

import pickle

import pytest
import torch
from transformers import AutoModelForCausalLM

from dtmerge.cli.main import main


def _dry_run_error(make_config, capsys, *overrides, **sections) -> str:
    capsys.readouterr()
    assert main(["run", str(make_config(**sections)), "--dry-run", *overrides]) == 2
    return capsys.readouterr().err


# -- case 4: pickle-only weights


@pytest.fixture
def pickle_model(tmp_path, tiny_model_dir):
    out = tmp_path / "pickled"
    out.mkdir()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.save(model.state_dict(), out / "pytorch_model.bin")  # what older tools wrote
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            (out / f.name).write_bytes(f.read_bytes())
    assert not list(out.glob("*.safetensors")) and (out / "pytorch_model.bin").exists()
    return out


def test_pickle_only_base_is_refused_before_training_with_the_command(make_config, capsys,
                                                                      pickle_model):
    err = _dry_run_error(make_config, capsys, model={"path": str(pickle_model)})
    assert (f"model.path '{pickle_model}' has only pickle weights (.bin/.pt), which the merge "
            "cannot read and which can run code when loaded; convert them once with the safe "
            f"loader: python -m dtmerge.models.convert {pickle_model} {pickle_model}-safetensors"
            in err)
    # a real run stops in the preflight too: nothing trained
    capsys.readouterr()
    cfg = make_config(model={"path": str(pickle_model)})
    assert main(["run", str(cfg)]) == 2
    assert "has only pickle weights" in capsys.readouterr().err
    assert not (cfg.parent / "runs" / "r" / "models").exists()


def test_convert_writes_safetensors_that_load_identically(pickle_model, tiny_model_dir, capsys):
    from dtmerge.models.convert import main as convert_main

    dst = pickle_model.parent / "converted"
    assert convert_main([str(pickle_model), str(dst)]) == 0
    assert (dst / "model.safetensors").exists() and not (dst / "pytorch_model.bin").exists()
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(dst).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- case 11: a malicious pickle


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/dtm-should-not-exist",))


def test_malicious_pickle_is_refused_clearly(tmp_path, capsys):
    from dtmerge.models.convert import main as convert_main

    src = tmp_path / "evil"
    src.mkdir()
    (src / "config.json").write_text("{}")
    with open(src / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"w": _Exploit()}, fh)
    assert convert_main([str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src / 'pytorch_model.bin'}: refused to load these pickle "
                          "weights: they hold something other than plain tensors (")
    assert "get safetensors weights from a source you trust" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- case 8: K = 1


def test_one_portion_is_refused(make_config, capsys):
    err = _dry_run_error(make_config, capsys, disperse={"num_portions": 1})
    assert ("disperse.num_portions=1 trains one sub-model on all the data: that is plain SFT "
            "(train.sft_baseline already trains it) and merging one model changes nothing; use "
            "num_portions >= 2") in err


# -- case 13: unsafe local tasks


def test_unsafe_local_task_is_refused_by_the_preflight(make_config, capsys, mc_tasks):
    spec = mc_tasks / "tiny_mc.yaml"
    spec.write_text(spec.read_text() + "unsafe_code: true\n")
    err = _dry_run_error(make_config, capsys, eval={"tasks": ["tiny_mc"],
                                                    "include_path": [str(mc_tasks)]})
    assert ("eval tasks tiny_mc execute model-written code (unsafe_code: true): set "
            "eval.allow_code_execution: true (ideally in a sandbox) or drop them") in err


# -- case 14: every name a later stage resolves


@pytest.mark.parametrize("override, message", [
    ("merge.method=tiess", "unknown merge method 'tiess'. Did you mean 'ties'?"),
    ("merge.params.densty=0.5", "merge method 'linear' has no parameter 'densty'"),
    ("disperse.strategy=kmeens", "unknown dispersal strategy (disperse.strategy) 'kmeens'. "
                                 "Did you mean 'kmeans'?"),
    ("eval.variants=[bogus]", "eval.variants: 'bogus' is neither one of base, sft, dtm, "
                              "submodels, interpolation, best nor a model directory under "),
    ("train.lr_scheduler=cosin", "train.lr_scheduler: unknown scheduler 'cosin'. Did you mean "
                                 "'cosine'"),
])
def test_names_are_resolved_before_training(make_config, capsys, override, message):
    err = _dry_run_error(make_config, capsys, override)
    assert message in err and "Traceback" not in err


def test_unknown_task_is_resolved_against_lm_evals_index(make_config, capsys, mc_tasks):
    err = _dry_run_error(make_config, capsys, eval={"tasks": ["tiny_mcc", "hellaswagg"],
                                                    "include_path": [str(mc_tasks)]})
    assert "eval.tasks: unknown task 'tiny_mcc'. Did you mean 'tiny_mc'" in err
    assert "unknown task 'hellaswagg'. Did you mean 'hellaswag'" in err


def test_dry_run_says_not_checked_for_hub_ids_offline(make_config, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = make_config(model={"path": "someone/some-model"})
    assert main(["run", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("dry run: config, names and disk space OK; NOT checked (nothing to "
                           "read here): model 'someone/some-model' (a Hub id: needs network")
    assert "model files OK" not in out
