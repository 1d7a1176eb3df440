import pytest
import yaml

from dtmerge.config import RunConfig, load_config
from dtmerge.errors import ConfigError


def _write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {"name": "r", "model": {"path": "m"}, "data": {"path": "d.jsonl"}}


def test_defaults_follow_the_paper(tmp_path):
    cfg = load_config(_write(tmp_path, BASE))
    assert cfg.disperse.num_portions == 4 and cfg.disperse.strategy == "random"
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.lora.dropout) == (16, 16, 0.05)
    assert cfg.train.lora.target_modules == "mlp"
    assert cfg.train.learning_rate == 3e-4 and cfg.train.warmup_steps == 100
    assert cfg.train.batch_size * cfg.train.grad_accum == 16
    assert (cfg.train.adam_beta2, cfg.train.max_grad_norm) == (0.98, 0.3)
    assert cfg.merge.method == "linear" and cfg.data.first_turn_only


def test_unknown_key_named_with_suggestion_and_allowed(tmp_path):
    data = {**BASE, "train": {"learning_rat": 1e-4}}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    msg = str(err.value)
    assert "unknown key 'train.learning_rat'" in msg and "Did you mean 'learning_rate'" in msg
    assert "Allowed here:" in msg and "warmup_steps" in msg


def test_all_errors_reported_at_once(tmp_path):
    data = {**BASE, "train": {"batch_size": "big"}, "disperse": {"num_portions": 0}}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    assert "2 configuration error" in str(err.value)
    assert "train.batch_size" in str(err.value) and "disperse.num_portions" in str(err.value)


def test_overrides_are_typed_and_validated(tmp_path):
    cfg = load_config(_write(tmp_path, BASE),
                      ["train.learning_rate=1e-5", "disperse.num_portions=2", "merge.weights=[0.3,0.7]"])
    assert cfg.train.learning_rate == 1e-5 and cfg.merge.weights == [0.3, 0.7]
    with pytest.raises(ConfigError, match="unknown key 'train.nope'"):
        load_config(_write(tmp_path, BASE), ["train.nope=1"])
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_config(_write(tmp_path, BASE), ["train.learning_rate"])


def test_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match="disperse.field is required"):
        load_config(_write(tmp_path, {**BASE, "disperse": {"strategy": "field"}}))
    with pytest.raises(ConfigError, match="one weight per sub-model"):
        load_config(_write(tmp_path, {**BASE, "merge": {"weights": [1.0]}}))


def test_yaml_round_trip(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["train.method=full"])
    again = RunConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_train_passes_trl_sft_config_fields_through(tmp_path):
    from dtmerge.train.trainer import sft_config

    data = {**BASE, "train": {"optim": "adafactor", "neftune_noise_alpha": 5.0,
                              "num_train_epochs": 2, "gradient_accumulation_steps": 3}}
    cfg = load_config(_write(tmp_path, data))
    # TRL's names of dtmerge's own settings land on dtmerge's names (one spelling inside)
    assert cfg.train.num_epochs == 2 and cfg.train.grad_accum == 3
    assert cfg.train.sft_passthrough == {"optim": "adafactor", "neftune_noise_alpha": 5.0}
    args = sft_config(cfg, tmp_path / "work", [])
    assert args.optim == "adafactor" and args.neftune_noise_alpha == 5.0
    assert args.num_train_epochs == 2 and args.gradient_accumulation_steps == 3


def test_report_to_joins_the_tracking_sections_trackers(tmp_path):
    from dtmerge.train.trainer import sft_config

    cfg = load_config(_write(tmp_path, {**BASE, "train": {"report_to": "wandb"}}))
    assert sft_config(cfg, tmp_path / "work", ["tensorboard"]).report_to == ["tensorboard", "wandb"]
    cfg = load_config(_write(tmp_path, {**BASE, "train": {"report_to": ["none"]}}))
    assert sft_config(cfg, tmp_path / "work", ["mlflow"]).report_to == ["mlflow"]


@pytest.mark.parametrize("train, message", [
    ({"optimm": "adamw_torch"}, r"unknown key 'train.optimm': neither .* Did you mean 'optim'\?"),
    ({"num_train_epochs": 2, "num_epochs": 3}, r"train.num_train_epochs is TRL's name for train.num_epochs"),
    ({"output_dir": "x"}, r"train.output_dir: set per job"),
    ({"bf16": True}, r"train.bf16: use model.dtype"),
])
def test_train_passthrough_rejects_unknown_and_owned_keys(tmp_path, train, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {**BASE, "train": train}))
