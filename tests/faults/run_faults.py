"""The fault-injection run of test_faults.py, in a fresh interpreter.

    python tests/faults/run_faults.py WORK_DIR MODEL_DIR KILLS   -> one JSON line on stdout

The kills fork children of this process. Forking the pytest process itself is not safe once
earlier tests left thread pools, a process-pool fork server or a Ray client in it (the forked
reference run then died in training in a full-suite run), so the test starts this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]


def main(work: Path, model_dir: Path, kills: int) -> dict:
    import torch

    from faultlib import chaos, reference_run, warm_imports, write_inputs

    torch.set_num_threads(1)
    cfg = write_inputs(work, model_dir)
    warm_imports(cfg)
    reference, labels = reference_run(cfg, work)
    report = chaos(cfg, work, kills=kills, seed=0, reference=reference, labels=labels,
                   log=lambda msg: print(msg, file=sys.stderr))
    return {"labels": len(labels), "reference": sorted(reference), "failures": report.failures,
            "outputs_lost": report.outputs_lost, "final_identical": report.final_identical,
            "chains": report.chains, "kills_landed": report.kills_landed,
            "kill_points": report.kill_points, "line": report.line(), "where": report.where()}


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.flush()
    print(json.dumps(result))
