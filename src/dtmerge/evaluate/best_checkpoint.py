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
