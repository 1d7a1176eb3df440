"""Fault injection: a tiny `dtm run` SIGKILLed at 20 seeded points across every stage.

Each kill is followed by a rerun of the same command; after every kill no job may be marked
done with an output different from an uninterrupted run's, and every chain of reruns must
end bit-identical to it (model safetensors and eval scores). `scripts/chaos.py` runs the same
with more kills, and with kills from outside at random times.
"""

from __future__ import annotations

import os

import pytest
import torch

from faultlib import chaos, reference_run, warm_imports, write_inputs

KILLS = int(os.environ.get("DTM_FAULT_KILLS", "20"))


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_is_bit_identical(tmp_path, tiny_model_dir):
    torch.set_num_threads(1)
    cfg = write_inputs(tmp_path, tiny_model_dir)
    warm_imports(cfg)
    reference, labels = reference_run(cfg, tmp_path)
    assert len(labels) > 60, f"only {len(labels)} fault points in a whole run"
    assert set(reference) >= {"data", "disperse", "train:sub_0", "train:sub_1", "train:sft",
                              "merge", "eval:dtm", "eval:sub_0", "eval:base"}
    report = chaos(cfg, tmp_path, kills=KILLS, seed=0, reference=reference, labels=labels,
                   log=print)
    print(report.line())
    print("kills per interrupted job:", report.where())
    assert report.failures == [], report.failures
    assert report.outputs_lost == [], report.outputs_lost
    assert report.final_identical == report.chains >= 1
    assert report.kills_landed >= KILLS - 2, report.line()  # nearly every kill hit a live run
    stages = {point.split(":")[0] for point in report.kill_points}
    assert len(stages & {"data", "disperse", "train", "merge", "eval", "report"}) >= 4, \
        report.where()  # kills spread over the pipeline
