"""Keep the weights of the best monitored step as a model of its own, and restore them.

The Trainer keeps one rolling checkpoint (`save_total_limit=1`) and the work directory is
removed after training, so the step the monitor calls best would otherwise be lost. The
keeper saves the model (the adapter only, for PEFT) and its tokenizer with `save_pretrained`
each time the chosen score improves, into `models/<job>_best/` (atomically: a reader sees the
previous best or the new one, never half of one), which `dtm eval` can score and ship like any
other variant. `best.json` beside the weights records the step and the score.
"""

from __future__ import annotations

import json
from pathlib import Path

from dtmerge.rundir import atomic_dir

MARKER = "best.json"


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


class BestKeeper:
    """Saves and restores the best weights of one training job.

    Args:
        out_dir: where the best model goes, e.g. `<run>/models/sft_best`.
        by: the score that decides ("heldout_loss": lower is better; "probe_acc": higher).
    """

    def __init__(self, out_dir: str | Path, by: str = "heldout_loss"):
        self.out_dir = Path(out_dir)
        self.by = by
        self.step: int | None = None
        self.score: float | None = None

    @property
    def lower_is_better(self) -> bool:
        return self.by.endswith("loss")

    def improves(self, score: float | None) -> bool:
        if score is None:
            return False
        if self.score is None:
            return True
        return score < self.score if self.lower_is_better else score > self.score

    def save(self, model, tokenizer, step: int, score: float) -> None:
        with atomic_dir(self.out_dir) as tmp:
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            (tmp / MARKER).write_text(json.dumps({"step": step, "score": score, "by": self.by}) + "\n")
        self.step, self.score = step, score

    def forget(self) -> None:
        """Drop a best model left by an earlier, different run of this job."""
        import shutil

        shutil.rmtree(self.out_dir, ignore_errors=True)
        self.step = self.score = None

    def resume(self) -> None:
        """Pick up the best recorded before an interruption (same job, resumed)."""
        try:
            info = json.loads((self.out_dir / MARKER).read_text())
        except (OSError, ValueError):
            return
        if info.get("by") == self.by:
            self.step, self.score = info.get("step"), info.get("score")

    def restore(self, model) -> None:
        """Load the kept weights back into `model` in place (the trainable part for PEFT)."""
        from safetensors.torch import load_file

        files = sorted(self.out_dir.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{self.out_dir}: no saved weights to restore")
        state = {}
        for f in files:
            state.update(load_file(str(f)))
        if is_peft(model):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, state)
        else:
            # strict=False: tied weights (lm_head) are saved once; a name that does not match
            # the model, though, would leave weights unrestored, so that is an error.
            unexpected = model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise RuntimeError(f"{self.out_dir}: weights do not fit the model "
                                   f"(unexpected {unexpected[:3]})")


TRADEOFF = "tradeoff"
FRONT_FILE = "front.json"


class TradeoffKeeper(BestKeeper):
    """`monitor.best_by: tradeoff`: the decision's rule inside one training job.

    The best step keeps the most knowledge (probe accuracy, on validation items) among the
    steps whose held-out instruction loss is within `loss_margin` (relative) of the final
    step's: the instruction level the full job reaches. The final loss is known only at the
    end, so during training the weights of every probed step that no other one beats on both
    (lower held-out loss, higher probe accuracy) are kept in `<out>.steps/`; `finish` then
    picks one, moves it to `<out>` and deletes the rest. When the pick is the final step no
    `<job>_best` is written: it would be the job's own model (the summary says so).
    """

    def __init__(self, out_dir: str | Path, loss_margin: float = 0.05, alpha: float = 0.05):
        super().__init__(out_dir, TRADEOFF)
        self.loss_margin = loss_margin
        self.alpha = alpha
        self.front: list[dict] = []  # {"step", "heldout_loss", "probe_acc"} of kept steps
        self.why: str | None = None

    @property
    def steps_dir(self) -> Path:
        return self.out_dir.with_name(self.out_dir.name + ".steps")

    def offer(self, model, step: int, loss: float | None, acc: float | None,
              correct: list[int] | None = None) -> bool:
        """Keep this step's weights if no kept step is as good on both; True when kept.
        `correct`: the probe's per-item results (1 right, 0 wrong), for `finish`'s test."""
        if loss is None or acc is None:
            return False
        if any(f["heldout_loss"] <= loss and f["probe_acc"] >= acc for f in self.front):
            return False
        with atomic_dir(self.steps_dir / f"step-{step}") as tmp:
            model.save_pretrained(tmp)
        beaten = [f for f in self.front if loss <= f["heldout_loss"] and acc >= f["probe_acc"]]
        for f in beaten:
            import shutil

            shutil.rmtree(self.steps_dir / f"step-{f['step']}", ignore_errors=True)
        self.front = [f for f in self.front if f not in beaten]
        self.front.append({"step": step, "heldout_loss": loss, "probe_acc": acc,
                           **({"correct": list(correct)} if correct is not None else {})})
        from dtmerge.rundir import atomic_write_json

        atomic_write_json(self.steps_dir / FRONT_FILE, self.front)
        return True

    def finish(self, tokenizer, final_step: int, final_loss: float | None,
               final_correct: list[int] | None = None) -> None:
        """Choose among the kept steps and write `<out>` (or nothing, for the final step).

        With the probe's per-item results of the pick and of the final step, an earlier pick
        must also keep more knowledge than the final step beyond the probe's noise (a
        one-sided paired sign test on the items where they differ, at `alpha`): a probe of a
        few hundred items otherwise picks whichever step its noise favours, and the `_best`
        model is no better than the final one."""
        import shutil

        if final_loss is None or not self.front:
            self.why = "no held-out loss and probe at the final step: nothing to choose"
            shutil.rmtree(self.steps_dir, ignore_errors=True)
            return
        target = final_loss * (1 + self.loss_margin)
        meets = [f for f in self.front if f["heldout_loss"] <= target]
        pick = max(meets, key=lambda f: (f["probe_acc"], f["step"])) if meets else None
        noise = None if pick is None or pick["step"] >= final_step else \
            _within_noise(pick, final_correct, self.alpha)
        if pick is None or pick["step"] >= final_step or noise:
            self.step, self.score = final_step, None
            self.why = (f"no earlier step keeps more knowledge at the final step's instruction "
                        f"level (held-out loss within {self.loss_margin:.0%} of {final_loss:.4f})"
                        + (f": {noise}" if noise else ""))
            shutil.rmtree(self.out_dir, ignore_errors=True)
        else:
            src = self.steps_dir / f"step-{pick['step']}"
            with atomic_dir(self.out_dir) as tmp:
                shutil.copytree(src, tmp, dirs_exist_ok=True)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                (tmp / MARKER).write_text(json.dumps({
                    "step": pick["step"], "score": pick["probe_acc"], "by": TRADEOFF,
                    "heldout_loss": pick["heldout_loss"], "final_step": final_step,
                    "final_heldout_loss": final_loss, "target_heldout_loss": target}) + "\n")
            self.step, self.score = pick["step"], pick["probe_acc"]
            tested = "" if final_correct is None or "correct" not in pick else \
                f" (more than the final step's {sum(final_correct) / len(final_correct):.3f} " \
                f"beyond the probe's noise, p {_sign_test(pick['correct'], final_correct):.3g})"
            self.why = (f"step {pick['step']} keeps probe accuracy {pick['probe_acc']:.3f}"
                        f"{tested} at held-out loss {pick['heldout_loss']:.4f}, within "
                        f"{self.loss_margin:.0%} of the final step's {final_loss:.4f}")
        shutil.rmtree(self.steps_dir, ignore_errors=True)

    def forget(self) -> None:
        import shutil

        super().forget()
        shutil.rmtree(self.steps_dir, ignore_errors=True)
        self.front = []

    def resume(self) -> None:
        try:
            self.front = json.loads((self.steps_dir / FRONT_FILE).read_text())
        except (OSError, ValueError):
            self.front = []
        self.front = [f for f in self.front if (self.steps_dir / f"step-{f['step']}").is_dir()]


def _sign_test(better: list[int], than: list[int]) -> float:
    """One-sided p of "`better` is not right more often than `than`" on paired items: an
    exact binomial test on the items where exactly one is right (McNemar's exact form)."""
    from scipy.stats import binomtest

    wins = sum(1 for a, b in zip(better, than) if a > b)
    losses = sum(1 for a, b in zip(better, than) if a < b)
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def _within_noise(pick: dict, final_correct: list[int] | None, alpha: float) -> str | None:
    """Why `pick` is not shown to keep more than the final step, or None (it is, or the
    per-item results to test it are missing)."""
    if final_correct is None or "correct" not in pick or len(pick["correct"]) != len(final_correct):
        return None
    p = _sign_test(pick["correct"], final_correct)
    if p <= alpha:
        return None
    final_acc = sum(final_correct) / max(len(final_correct), 1)
    return (f"the best candidate, step {pick['step']}, probes {pick['probe_acc']:.3f} against "
            f"the final step's {final_acc:.3f} on the same {len(final_correct)} validation "
            f"items, within the probe's noise (paired sign test p {p:.3g} > {alpha:g})")
