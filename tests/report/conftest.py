from pathlib import Path

import pytest

from report_fixtures import make_run


@pytest.fixture
def run_root(tmp_path) -> Path:
    """A synthetic run directory with eval results, manifest, monitor curves and bias.json."""
    return make_run(tmp_path / "runs" / "demo")
