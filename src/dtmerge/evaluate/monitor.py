"""The knowledge monitor: the paper's pilot study as a training callback.

Every `every_steps` optimizer steps it scores a fixed multiple-choice probe (knowledge) and the
bias indicator of the paper: (drop of training loss since the first log) / (drop of held-out
loss over the same span). A ratio near 1 means the model learns what generalises; a growing
ratio means it fits the training data's own regularities. Records go to `monitor.jsonl`; when
knowledge falls more than `drop_threshold` below its peak the monitor warns (and can stop the
run), and at the end it names the best step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from dtmerge.evaluate.alerts import Alert, AlertSinks, send_alert
from dtmerge.evaluate.best_checkpoint import TRADEOFF, BestKeeper, TradeoffKeeper
from dtmerge.rundir import atomic_write_json, atomic_write_text, damaged_state

log = logging.getLogger("dtmerge.monitor")


def _smooth(values: list[float], window: int = 3) -> list[float]:
    """Centred moving average; the probe is small, so single points are noisy."""
    if len(values) < window:
        return list(values)
    half = window // 2
    return [sum(values[max(0, i - half):i + half + 1]) / len(values[max(0, i - half):i + half + 1])
            for i in range(len(values))]


def detect_decline(steps: list[int], accs: list[float], threshold: float) -> dict:
    """Find the knowledge peak, the onset of decline and whether to alert.

    Args:
        steps: Training steps of the probes, increasing.
        accs: Probe accuracy at each step.
        threshold: Alert when accuracy falls more than this below the peak (absolute).

    Returns:
        dict with `peak_step` (step of the maximum of the smoothed curve, the last one on ties),
        `peak_acc` (raw accuracy there), `onset_step` (first step after the peak from which the
        smoothed curve stays lower, reported only if the curve ends more than threshold/2
        below the peak, else None), `best_step` (step with the highest raw accuracy, the best
        checkpoint to keep), `alert` (a raw accuracy after the peak is more than `threshold`
        below the peak's raw accuracy) and `alert_step` (the first such step, or None).
    """
    if not steps:
        return {"peak_step": None, "peak_acc": None, "onset_step": None, "best_step": None,
                "alert": False, "alert_step": None}
    smooth = _smooth(list(accs))
    peak = max(range(len(smooth)), key=lambda i: (smooth[i], i))
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))
    peak_acc = max(accs[max(0, peak - 1):peak + 2])  # raw best in the smoothing window
    alert_step = next((steps[i] for i in range(peak + 1, len(accs))
                       if peak_acc - accs[i] > threshold), None)
    onset = None
    if peak < len(steps) - 1 and smooth[peak] - smooth[-1] > threshold / 2:
        onset = steps[peak + 1]
    return {"peak_step": steps[peak], "peak_acc": peak_acc, "onset_step": onset,
            "best_step": steps[best], "alert": alert_step is not None, "alert_step": alert_step}


def bias_ratio(train_first: float | None, train_now: float | None, held_first: float | None,
               held_now: float | None, eps: float = 1e-6) -> float | None:
    """(drop of training loss) / (drop of held-out loss); None while undefined."""
    if None in (train_first, train_now, held_first, held_now):
        return None
    held_drop = held_first - held_now
    if abs(held_drop) < eps:
        return None
    return (train_first - train_now) / held_drop


def read_monitor_lines(path: Path, step: int) -> list[dict]:
    """The curve a resumed job measured before (written whole, so a bad line is damage)."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise damaged_state(path, "a line is not valid JSON", (
            f"delete it and rerun the same `dtm train`: training resumes from step {step} "
            "and the monitor's curve starts again there (the points before are lost)")) from None
    if not all(isinstance(r, dict) for r in rows):
        raise damaged_state(path, "a line is not a JSON object", "delete it and rerun `dtm train`")
    return rows


class KnowledgeMonitor(TrainerCallback):
    """Probe knowledge and the bias ratio every `every_steps` steps of a Trainer run.

    Args:
        probe: A `ProbeSet` (see `dtmerge.evaluate.probe`).
        every_steps: Probe interval in optimizer steps (also probed at step 0 and at the end).
        drop_threshold: Absolute accuracy drop below the peak that triggers the warning.
        stop_on_drop: Also stop training (`control.should_training_stop`) on that drop.
        heldout_records: Normalised records ({prompt, completion}) for the held-out loss.
        out_path: `monitor.jsonl` to write; a `*_summary.json` is written beside it.
        tokenizer: Encodes the held-out records (default: the trainer's processing class).
        job_name: Named in the log messages.
        keeper: Keeps the best step's weights as a model of its own (see `BestKeeper`).
        patience: Stop after this many probes without a new best (needs `keeper`).
        ratio_threshold: Alert when the bias ratio rises above this.
        sinks: Where alerts go besides the terminal (command, webhook, MLflow).
    """

    def __init__(self, probe, every_steps: int = 50, drop_threshold: float = 0.05,
                 stop_on_drop: bool = False, heldout_records: list[dict] | None = None,
                 out_path: str | Path | None = None, tokenizer=None, job_name: str = "train",
                 keeper: BestKeeper | None = None, patience: int | None = None,
                 ratio_threshold: float | None = None, sinks: AlertSinks | None = None):
        self.probe = probe
        self.every_steps = every_steps
        self.drop_threshold = drop_threshold
        self.stop_on_drop = stop_on_drop
        self.heldout_records = list(heldout_records or [])
        self.out_path = Path(out_path) if out_path else None
        self.tokenizer = tokenizer
        self.job_name = job_name
        self.records: list[dict] = []
        self.summary: dict = {}
        self.seconds = 0.0  # time spent probing, to report the overhead
        self._heldout = None
        self._last_loss: float | None = None
        self._alerted = False
        self.keeper = keeper
        self.patience = patience
        self.ratio_threshold = ratio_threshold
        self.sinks = sinks or AlertSinks()
        self.alerts: list[dict] = []  # every alert sent, with its failed channels
        self._since_best = 0
        self._correct: list[int] | None = None  # the last probe, per item
        self._stopped_by: str | None = None

    # -- measurements
    def _heldout_loss(self, model) -> float | None:
        if not self.heldout_records or self.tokenizer is None:
            return None
        from dtmerge.evaluate.scoring import encode_record, mean_completion_loss

        if self._heldout is None:  # encoded once
            self._heldout = [encode_record(self.tokenizer, r) for r in self.heldout_records]
        pad = self.tokenizer.pad_token_id or 0
        return mean_completion_loss(model, self._heldout, pad)

    def _measure(self, step: int, model) -> dict:
        t0 = time.perf_counter()
        if self.probe is None:
            self._correct, acc = None, None
        elif hasattr(self.probe, "correct"):
            self._correct = self.probe.correct(model)
            acc = sum(self._correct) / max(len(self._correct), 1)
        else:  # a probe that reports only its accuracy: no paired test of two steps
            self._correct, acc = None, self.probe.accuracy(model)
        held = self._heldout_loss(model)
        first = next((r for r in self.records if r["train_loss"] is not None
                      and r["heldout_loss"] is not None), None)
        rec = {"step": step, "probe_acc": acc, "train_loss": self._last_loss,
               "heldout_loss": held, "ratio": None}
        if first is not None:
            rec["ratio"] = bias_ratio(first["train_loss"], self._last_loss,
                                      first["heldout_loss"], held)
        self.seconds += time.perf_counter() - t0
        rec["monitor_seconds"] = round(self.seconds, 3)
        self.records.append(rec)
        self._write()
        return rec

    def _write(self) -> None:
        if self.out_path is None:
            return
        # rewritten whole through a rename so a reader never sees a half-written line
        atomic_write_text(self.out_path, "".join(json.dumps(r) + "\n" for r in self.records))

    def _check(self, control) -> None:
        probed = [r for r in self.records if r["probe_acc"] is not None]
        self.summary = detect_decline([r["step"] for r in probed],
                                      [r["probe_acc"] for r in probed], self.drop_threshold)
        if self.summary["alert"] and not self._alerted:
            self._alerted = True
            s = self.summary
            message = (f"{self.job_name}: knowledge probe fell more than {self.drop_threshold:.3f}"
                       f" below its peak ({s['peak_acc']:.3f} at step {s['peak_step']}) at step "
                       f"{s['alert_step']}; best checkpoint so far: step {s['best_step']}"
                       + ("; stopping training (monitor.stop_on_drop)" if self.stop_on_drop else ""))
            self._alert("knowledge_drop", message)
            if self.stop_on_drop:
                self._stop(control, "stop_on_drop")
        ratio = self.records[-1].get("ratio") if self.records else None
        if (self.ratio_threshold is not None and isinstance(ratio, (int, float))
                and ratio > self.ratio_threshold
                and not any(a["kind"] == "bias_ratio" for a in self.alerts)):
            self._alert("bias_ratio", (
                f"{self.job_name}: training loss fell {ratio:.2f}x as much as held-out loss "
                f"(threshold {self.ratio_threshold:g}): the model is fitting this data's own "
                "regularities more than what generalises (the paper's bias indicator)"))
        self._write_summary()

    def _alert(self, kind: str, message: str) -> None:
        step = self.records[-1]["step"] if self.records else 0
        failed = send_alert(Alert(self.job_name, kind, step, message), self.sinks)
        self.alerts.append({"kind": kind, "step": step, "text": message, "failed": failed})
        self.records[-1]["alert"] = message  # `dtm watch` and the report show it
        self._write()

    def _stop(self, control, reason: str) -> None:
        control.should_training_stop = True
        self._stopped_by = self._stopped_by or reason

    def _track_best(self, rec: dict, model, control) -> None:
        """Keep the weights when the chosen score improves; stop after `patience` probes
        without improvement."""
        if self.keeper is None or rec["step"] == 0:  # step 0 is the base model, not a checkpoint
            return
        if isinstance(self.keeper, TradeoffKeeper):
            improved = self.keeper.offer(model, rec["step"], rec.get("heldout_loss"),
                                         rec.get("probe_acc"), self._correct)
            self._since_best = 0 if improved else self._since_best + 1
            if self.patience is not None and self._since_best >= self.patience:
                self._stop(control, "patience")
            return
        score = rec.get(self.keeper.by)
        if self.keeper.improves(score):
            self.keeper.save(model, self.tokenizer, rec["step"], score)
            self._since_best = 0
            return
        self._since_best += 1
        if self.patience is not None and self._since_best >= self.patience:
            log.warning("%s: no better %s for %d probes (monitor.patience); stopping and "
                        "restoring step %s", self.job_name, self.keeper.by, self._since_best,
                        self.keeper.step)
            self._stop(control, "patience")

    def _write_summary(self) -> None:
        if self.out_path is not None:  # also during training, so a live view sees the peak
            atomic_write_json(self.out_path.with_name(self.out_path.stem + "_summary.json"),
                              {**self.summary, "job": self.job_name})

    # -- Trainer hooks
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.tokenizer is None:
            self.tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if state.global_step > 0 and self.out_path is not None and self.out_path.exists():
            # resumed from a checkpoint: keep the curve measured before the interruption
            self.records = [r for r in read_monitor_lines(self.out_path, state.global_step)
                            if r.get("step", 0) <= state.global_step]
            last = [r["train_loss"] for r in self.records if r.get("train_loss") is not None]
            self._last_loss = last[-1] if last else None
            if self.keeper is not None:
                self.keeper.resume()
        elif self.keeper is not None and state.global_step == 0:
            self.keeper.forget()  # a fresh start: a best model on disk belongs to an old run
        if model is not None and (not self.records or self.records[-1]["step"] != state.global_step):
            self._measure(state.global_step, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._last_loss = float(logs["loss"])

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step % self.every_steps == 0:
            rec = self._measure(state.global_step, model)
            self._track_best(rec, model, control)
            self._check(control)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None and (not self.records or self.records[-1]["step"] != state.global_step):
            rec = self._measure(state.global_step, model)
            self._track_best(rec, model, control)
        self._check(control)
        if isinstance(self.keeper, TradeoffKeeper) and self.records:
            self.keeper.finish(self.tokenizer, self.records[-1]["step"],
                               self.records[-1].get("heldout_loss"), self._correct)
            self.summary["kept_why"] = self.keeper.why
        self._restore_if_stopped(model)
        ckpt = Path(args.output_dir) / f"checkpoint-{self.summary.get('best_step')}" \
            if getattr(args, "output_dir", None) else None
        self.summary.update(
            job=self.job_name, probe_size=len(self.probe) if self.probe is not None else 0,
            every_steps=self.every_steps, monitor_seconds=round(self.seconds, 3),
            best_checkpoint=str(ckpt) if ckpt is not None and ckpt.exists() else None,
            final_ratio=self.records[-1]["ratio"] if self.records else None,
            stopped_by=self._stopped_by, alerts=self.alerts, drop_threshold=self.drop_threshold,
            ratio_threshold=self.ratio_threshold, **self._kept())
        log.info("%s: knowledge peak %.3f at step %s; best step %s; decline onset %s",
                 self.job_name, self.summary.get("peak_acc") or 0.0, self.summary.get("peak_step"),
                 self.summary.get("best_step"), self.summary.get("onset_step"))
        self._write_summary()


    def _kept(self) -> dict:
        k = self.keeper
        if k is None:
            return {}
        return {"kept_by": k.by, "kept_step": k.step, "kept_score": k.score,
                "kept_model": str(k.out_dir) if k.step is not None and k.out_dir.is_dir()
                else None}

    def _restore_if_stopped(self, model) -> None:
        """A run the monitor stopped ends on the best weights, not on the declined ones."""
        k = self.keeper
        if (self._stopped_by is None or k is None or k.step is None or model is None
                or not k.out_dir.is_dir()):  # tradeoff: the pick may be the final step itself
            return
        k.restore(model)
        self.summary["restored_step"] = k.step
        log.warning("%s: restored the weights of step %s (best %s %.4f) before saving",
                    self.job_name, k.step, k.by, k.score)


def monitor_path(run, job_name: str) -> Path:
    """Where the monitor of `job_name` writes: `<run>/monitor/<job>/monitor.jsonl`."""
    return Path(run.root) / "monitor" / job_name / "monitor.jsonl"


def build_monitor(cfg, run, job_name: str, tokenizer=None) -> KnowledgeMonitor | None:
    """The monitor the train stage attaches to job `job_name`, or None when disabled.

    Probe tasks come from `monitor.probe_tasks`, else `report.knowledge_tasks`, else the
    knowledge tasks of `eval.tasks`; held-out records from the run's `data/heldout.jsonl`.

    Raises:
        ConfigError: The monitor is enabled but no multiple-choice probe task is known.
    """
    from dtmerge.errors import ConfigError
    from dtmerge.evaluate.probe import build_probe

    mc = cfg.monitor
    if not mc.enabled:
        return None
    tasks = list(mc.probe_tasks or cfg.report.knowledge_tasks)
    if not tasks:
        from dtmerge.evaluate.groups import resolve_tasks, task_category, task_manager_for

        names = resolve_tasks(cfg.eval.tasks, cfg.eval.include_path) if cfg.eval.tasks else []
        manager = task_manager_for(names, cfg.eval.include_path) if names else None
        tasks = [t for t in names if task_category(manager, t) == "knowledge"]
    if not tasks:
        raise ConfigError("monitor.enabled but no probe task: set monitor.probe_tasks to "
                          "multiple-choice knowledge tasks (local ones need eval.include_path)")
    if tokenizer is None:
        from dtmerge.models import load_tokenizer

        tokenizer = load_tokenizer(cfg.model)
    from dtmerge.evaluate.groups import resolve_tasks
    from dtmerge.evaluate.split import ItemSplit, split_of

    # The probe draws validation items only (the run's split, else the decision's own), so a
    # best step is never chosen on the items the report presents.
    split = split_of(cfg.eval) or ItemSplit(cfg.answer.validation_fraction, cfg.eval.split_seed)
    scored = resolve_tasks(cfg.eval.tasks, cfg.eval.include_path) if cfg.eval.tasks else []
    probe = build_probe(tasks, cfg.eval.include_path, tokenizer, mc.probe_size, cfg.seed,
                        split=split, eval_tasks=scored)
    heldout = []
    if run.heldout_data.exists():
        from dtmerge.data.jsonl import read_jsonl

        heldout = read_jsonl(run.heldout_data)[:32]  # a small fixed batch keeps probes cheap
    keeper = None
    if mc.keep_best or mc.patience:
        # without held-out records there is no held-out loss to pick by: use the probe
        by = mc.best_by if heldout or mc.best_by == "probe_acc" else "probe_acc"
        keeper = (TradeoffKeeper(run.model(f"{job_name}_best"), mc.best_loss_margin)
                  if by == TRADEOFF else BestKeeper(run.model(f"{job_name}_best"), by))
    sinks = AlertSinks(command=mc.alert_command, webhook=mc.alert_webhook,
                       mlflow=cfg.tracking.mlflow)
    return KnowledgeMonitor(probe, mc.every_steps, mc.drop_threshold, mc.stop_on_drop,
                            heldout_records=heldout, out_path=monitor_path(run, job_name),
                            tokenizer=tokenizer, job_name=job_name, keeper=keeper,
                            patience=mc.patience, ratio_threshold=mc.ratio_threshold, sinks=sinks)
