"""What a recipe changes in one training job, applied around TRL's SFTTrainer.

A job's `spec` (train/job.py) is plain JSON:

    {"seed": 7}                                   another training seed (uniform_soup)
    {"penalty": {"kind": "l2", "coef": 0.1}}      L2 toward the base (l2; `coef: auto` is
                                                  resolved to a number before training)
    {"penalty": {"kind": "ewc", "coef": 0.1, "fisher_text": "...", "fisher_docs": 64}}
    {"replay": true}                              the data file holds {"text"} records too
    {"lora_moe": {"experts": 4, "r": 8, "alpha": 16}}

Training itself stays TRL's: `RecipeTrainer` only adds the penalty to SFTTrainer's loss and
appends the replayed text (language-modelling loss on every token) to the prepared dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trl import SFTTrainer

from dtmerge.errors import DataError


class RecipeTrainer(SFTTrainer):
    """SFTTrainer plus an optional weight penalty and optional replayed plain text."""

    def __init__(self, *args, penalty=None, replay_texts: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Bound now: the model is PEFT-wrapped and no checkpoint has been loaded yet.
        self.penalty = penalty.bind(self.model) if penalty is not None else None
        self._penalty_logged = [0.0, 0.0, 0]  # penalty, its unscaled sum, micro-batches
        if replay_texts:
            self.train_dataset = with_replay(self.train_dataset, replay_texts,
                                             self.processing_class, self.args.max_length)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                   num_items_in_batch=num_items_in_batch)
        if self.penalty is None or not model.training:
            return out
        loss, rest = out if return_outputs else (out, None)
        extra = self.penalty(model).to(loss.device)
        self._penalty_logged[0] += float(extra.detach())
        self._penalty_logged[1] += float(self.penalty.last_sum)
        self._penalty_logged[2] += 1
        if self._loss_scaled_for_accumulation(num_items_in_batch):
            # Trainer sums such losses over the accumulation steps without dividing: divide
            # here so one optimizer step sees the penalty once. (Otherwise Trainer divides.)
            extra = extra / self.current_gradient_accumulation_steps
        loss = loss + extra
        return (loss, rest) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        """Beside the loss (which includes the penalty), log the penalty's mean since the last
        log and its unscaled sum_i w_i d_i^2: the report shows the penalty's share of the
        loss, and `coef: auto` scales its grid by the sum (recipes/calibrate.py)."""
        total, raw, n = self._penalty_logged
        if n and "loss" in logs:
            logs = {**logs, "penalty": total / n, "penalty_sum": raw / n}
            self._penalty_logged = [0.0, 0.0, 0]
        super().log(logs, *args, **kwargs)

    def _loss_scaled_for_accumulation(self, num_items_in_batch) -> bool:
        """Trainer.training_step's own test of whether it will divide the loss by the number
        of accumulation steps (False) or not (True)."""
        flag = getattr(self, "loss_is_scaled_for_ga", None)
        if flag is not None:
            return bool(flag)
        return bool((getattr(self, "model_accepts_loss_kwargs", False)
                     and num_items_in_batch is not None) or self.compute_loss_func is not None)


def with_replay(dataset, texts: list[str], tokenizer, max_length: int | None):
    """The prepared instruction dataset plus the texts tokenized with every token a label."""
    from datasets import Dataset, concatenate_datasets

    rows = []
    for text in texts:
        ids = tokenizer(text + (tokenizer.eos_token or ""), add_special_tokens=True)["input_ids"]
        ids = ids[:max_length] if max_length else ids
        if len(ids) > 1:
            rows.append({"input_ids": ids, "labels": list(ids)})
    keep = ["input_ids", "labels"]
    instructions = dataset.select_columns(keep)
    replay = Dataset.from_list(rows).cast(instructions.features) if rows else None
    return concatenate_datasets([instructions, replay]) if replay is not None else instructions


@dataclass
class RecipeSetup:
    model: Any
    peft_config: Any
    trainer_kwargs: dict = field(default_factory=dict)
    save: Callable | None = None  # (trainer, out_dir) for models PEFT cannot save


def text_records(path: Path) -> list[str]:
    from dtmerge.data.jsonl import read_jsonl

    return [r["text"] for r in read_jsonl(path) if "text" in r and "prompt" not in r]


def prepare_recipe(cfg, spec: dict, model, peft_config, tokenizer, data_path: Path) -> RecipeSetup:
    """Apply a job's recipe spec to the model and the trainer's arguments."""
    setup = RecipeSetup(model, peft_config)
    penalty = spec.get("penalty")
    if penalty:
        setup.trainer_kwargs["penalty"] = _build_penalty(cfg, penalty, model, tokenizer)
    if spec.get("replay"):
        texts = text_records(data_path)
        if not texts:
            raise DataError(f"{data_path}: the replay recipe's data has no text records")
        setup.trainer_kwargs["replay_texts"] = texts
    moe = spec.get("lora_moe")
    if moe:
        from dtmerge.models.lora_moe import add_lora_moe, save_lora_moe

        setup.model = add_lora_moe(model, **moe)
        setup.peft_config = None
        if cfg.model.gradient_checkpointing:  # frozen inputs: checkpointed blocks need a grad path
            setup.model.enable_input_require_grads()
        setup.save = lambda trainer, out: save_lora_moe(trainer.model, out, moe,
                                                        base_model=spec["base_model"])
    return setup


def _build_penalty(cfg, penalty: dict, model, tokenizer):
    from dtmerge.train.penalties import WeightPenalty, fisher_diagonal

    if not isinstance(penalty.get("coef"), (int, float)):
        from dtmerge.errors import TrainingError

        raise TrainingError(f"penalty coefficient {penalty.get('coef')!r} is not a number: a "
                            "coef: auto recipe is trained after its sweep (its prepare step)")
    if penalty["kind"] == "l2":
        return WeightPenalty(penalty["coef"])
    from dtmerge.data.text import read_text_documents
    from dtmerge.train.targets import linear_leaf_names, resolve_target_modules

    source = penalty["fisher_text"]
    texts = read_text_documents(source)[: penalty.get("fisher_docs", 64)]
    if cfg.train.method == "lora":
        targets = resolve_target_modules(model, cfg.train.lora.target_modules)
        targets = linear_leaf_names(model) if targets == "all-linear" else set(targets)
        names = {f"{n}.weight" for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in targets}
    else:
        names = None
    import torch

    if torch.cuda.is_available() and not cfg.model.load_in_4bit:
        model.to("cuda")  # Trainer would move it there anyway; the Fisher's backward is faster
    max_length = min(cfg.train.max_length, 512)
    cache = _fisher_cache(cfg, penalty, names, max_length)
    fisher = _read_fisher(cache, next(model.parameters()).device)
    if fisher is None:
        try:
            fisher = fisher_diagonal(model, tokenizer, texts, max_length, names,
                                     normalize=penalty.get("normalize", True))
        except ValueError as err:
            raise DataError(f"{source}: {err}") from None
        _write_fisher(cache, fisher)
    return WeightPenalty(penalty["coef"], fisher)


FISHER_CACHE = Path("cache") / "fisher"  # under the run directory


def _fisher_cache(cfg, penalty: dict, names: set[str] | None, max_length: int) -> Path:
    """Where the base model's Fisher for this penalty is kept: one file per (model, text,
    documents, length, parameters, normalisation), so the sweep's runs and the recipe's own
    job (up to six jobs) estimate it once; any change of those inputs is a new file."""
    from dtmerge.rundir import hash_model, hash_obj

    key = hash_obj({"model": hash_model(cfg.model.path), "revision": cfg.model.revision,
                    "dtype": cfg.model.dtype, "text": penalty.get("text_hash"),
                    "source": penalty["fisher_text"], "docs": penalty.get("fisher_docs", 64),
                    "max_length": max_length, "normalize": penalty.get("normalize", True),
                    "names": sorted(names) if names is not None else None})
    return Path(cfg.run_dir) / FISHER_CACHE / f"{key}.safetensors"


def _read_fisher(path: Path, device):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError):
        return None  # damaged (written by hand or cut short): estimated again, then replaced


def _write_fisher(path: Path, fisher: dict) -> None:
    """Atomically (temp then rename); a run directory that cannot be written only loses the
    cache, never the job."""
    import os

    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({n: t.detach().cpu().contiguous() for n, t in fisher.items()}, str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass
