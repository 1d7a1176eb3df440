"""A best checkpoint whose step is its job's last is the final model: not a variant of its own."""

import json

from dtmerge.evaluate.stage import best_is_final
from dtmerge.rundir import RunDir


def _run(tmp_path, best_step: int, final_steps: int) -> RunDir:
    run = RunDir(tmp_path / "r")
    best = run.model("sft_best")
    best.mkdir(parents=True)
    (best / "best.json").write_text(json.dumps({"step": best_step, "score": 1.0,
                                                "by": "heldout_loss"}))
    run.update_job("train:sft", status="done", steps=final_steps)
    return run


def test_best_at_the_last_step_is_said_to_be_the_final_model(tmp_path):
    run = _run(tmp_path, 492, 492)
    why = best_is_final(run, run.model("sft_best"))
    assert why and "492 of 492" in why and "same weights as sft" in why


def test_an_earlier_best_step_is_a_variant(tmp_path):
    run = _run(tmp_path, 200, 492)
    assert best_is_final(run, run.model("sft_best")) is None


class _Model:
    """Stands in for a model: save_pretrained writes its step, so we see which was kept."""

    def __init__(self, step):
        self.step = step

    def save_pretrained(self, d):
        (d / "weights.txt").write_text(str(self.step))


def test_tradeoff_keeps_the_most_knowledge_at_the_final_instruction_level(tmp_path):
    from dtmerge.evaluate.best_checkpoint import TradeoffKeeper

    keeper = TradeoffKeeper(tmp_path / "sft_best", loss_margin=0.05)
    # (step, held-out loss, probe accuracy): loss falls, knowledge falls after step 20
    curve = [(10, 1.30, 0.95), (20, 1.04, 0.93), (30, 1.02, 0.90), (40, 1.00, 0.80)]
    kept = [keeper.offer(_Model(s), s, loss, acc) for s, loss, acc in curve]
    assert kept == [True, True, True, True]  # none beaten on both so far
    keeper.offer(_Model(35), 35, 1.05, 0.85)  # beaten by step 20 on both: not kept
    assert not (keeper.steps_dir / "step-35").exists()
    keeper.finish(None, final_step=40, final_loss=1.00)
    # within 5% of the final loss: steps 20, 30, 40; the most knowledge: step 20
    assert (tmp_path / "sft_best" / "weights.txt").read_text() == "20"
    info = json.loads((tmp_path / "sft_best" / "best.json").read_text())
    assert info["step"] == 20 and info["by"] == "tradeoff" and info["final_step"] == 40
    assert not keeper.steps_dir.exists() and "step 20" in keeper.why


def test_tradeoff_writes_no_best_when_the_final_step_wins(tmp_path):
    from dtmerge.evaluate.best_checkpoint import TradeoffKeeper

    keeper = TradeoffKeeper(tmp_path / "sft_best")
    for s, loss, acc in [(10, 1.5, 0.70), (20, 1.2, 0.80), (30, 1.0, 0.90)]:  # no tax at all
        keeper.offer(_Model(s), s, loss, acc)
    keeper.finish(None, final_step=30, final_loss=1.0)
    assert not (tmp_path / "sft_best").exists() and "no earlier step" in keeper.why


def _items(acc: float, n: int = 200, shift: int = 0) -> list[int]:
    """Per-item probe results with accuracy `acc`; `shift` rotates which items are right."""
    right = round(acc * n)
    base = [1] * right + [0] * (n - right)
    return base[shift:] + base[:shift]


def test_tradeoff_keeps_an_earlier_step_only_beyond_the_probes_noise(tmp_path):
    from dtmerge.evaluate.best_checkpoint import TradeoffKeeper

    # step 20 probes 0.51 against the final 0.50 on 200 items: the noise of the probe
    keeper = TradeoffKeeper(tmp_path / "a" / "sft_best")
    final = _items(0.50)
    keeper.offer(_Model(20), 20, 1.03, 0.51, _items(0.51))
    keeper.offer(_Model(40), 40, 1.00, 0.50, final)
    keeper.finish(None, final_step=40, final_loss=1.00, final_correct=final)
    assert not (tmp_path / "a" / "sft_best").exists()
    assert "within the probe's noise" in keeper.why and "step 20" in keeper.why
    # step 20 probes 0.70: 40 more items right, none fewer: kept, and the why says so
    keeper = TradeoffKeeper(tmp_path / "b" / "sft_best")
    keeper.offer(_Model(20), 20, 1.03, 0.70, _items(0.70))
    keeper.offer(_Model(40), 40, 1.00, 0.50, final)
    keeper.finish(None, final_step=40, final_loss=1.00, final_correct=final)
    assert (tmp_path / "b" / "sft_best" / "weights.txt").read_text() == "20"
    assert "beyond the probe's noise" in keeper.why


def test_the_monitor_passes_per_item_probe_results_to_the_keeper(tmp_path):
    from dtmerge.evaluate.best_checkpoint import TradeoffKeeper
    from dtmerge.evaluate.monitor import KnowledgeMonitor

    class Probe:
        def __init__(self):
            self.script = iter([_items(0.5), _items(0.52, shift=3), _items(0.5)])

        def __len__(self):
            return 200

        def correct(self, model):
            return next(self.script)

    keeper = TradeoffKeeper(tmp_path / "sft_best")
    mon = KnowledgeMonitor(Probe(), every_steps=1, job_name="sft", keeper=keeper)
    mon._heldout_loss = (lambda it: (lambda model: next(it)))(iter([1.5, 1.02, 1.0]))
    from types import SimpleNamespace

    for step in (0, 1, 2):
        mon.on_step_end(None, SimpleNamespace(global_step=step), SimpleNamespace(),
                        model=_Model(step))
    mon.on_train_end(SimpleNamespace(output_dir=None), SimpleNamespace(global_step=2),
                     SimpleNamespace(), model=_Model(2))
    assert [r["probe_acc"] for r in mon.records] == [0.5, 0.52, 0.5]
    assert all("correct" in f for f in keeper.front)
    assert "within the probe's noise" in mon.summary["kept_why"]
