"""A finished run to publish: the report tests' synthetic eval files, a real report.json
written by dtmerge's report, a config and a tiny full model under models/dtm."""

import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))

from report_fixtures import make_run  # noqa: E402


@pytest.fixture
def published_run(tmp_path, tiny_model_dir) -> Path:
    from dtmerge.report.stage import write_report
    from dtmerge.rundir import RunDir

    root = make_run(tmp_path / "runs" / "demo", with_extras=False)
    (root / "config.yaml").write_text(yaml.safe_dump(
        {"name": "demo", "runs_dir": str(tmp_path / "runs"),
         "model": {"path": str(tiny_model_dir), "dtype": "float32"},
         "data": {"path": "instructions.jsonl"}, "disperse": {"num_portions": 3},
         "report": {"bootstrap_samples": 200}}))
    shutil.copytree(tiny_model_dir, root / "models" / "dtm")
    write_report(RunDir(root), ["facts", "science", "arith"], ["follow"], n_boot=200)
    return root
