import pytest

from recipe_helpers import records, write_jsonl

from dtmerge.config import config_from_dict
from dtmerge.rundir import RunDir


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "general.txt"
    path.write_text("\n".join(f"the city of rome is a capital {i}" for i in range(7)) + "\n\n")
    return path


@pytest.fixture
def make_cfg(tmp_path, tiny_model_dir):
    def make(recipes=None, **train):
        train = {"method": "lora", "max_steps": 2, "batch_size": 2, "grad_accum": 1,
                 "warmup_steps": 0, "learning_rate": 1e-2, "max_length": 128, "save_steps": 100,
                 "logging_steps": 1, "lora": {"r": 4, "alpha": 8}, **train}
        data = {"name": "r", "runs_dir": str(tmp_path / "runs"),
                "model": {"path": str(tiny_model_dir)}, "data": {"path": "unused.jsonl"},
                "disperse": {"num_portions": 2}, "train": train}
        if recipes is not None:
            data["recipes"] = recipes
        return config_from_dict(data)
    return make


@pytest.fixture
def run_with_data(make_cfg):
    def make(recipes=None, n=8, **train):
        cfg = make_cfg(recipes, **train)
        run = RunDir(cfg.run_dir)
        write_jsonl(run.all_data, records(n))
        for k in range(2):
            write_jsonl(run.portion("dtm", k), records(n)[k::2])
        return cfg, run
    return make
