"""`coef: auto` for the weight-penalty recipes (l2, ewc): the strength chosen on validation data.

A fixed coefficient means nothing across models: at l2's old default 0.1 the Gemma-3-270M
model equalled SFT on every scored item. `auto` runs a short sweep instead, every run a
fraction (`auto_fraction`, default 0.2) of the recipe's training steps on the instruction
data, and chooses on the run's held-out split of that data (`data/heldout.jsonl`,
`data.eval_fraction`), never on an evaluation item:

1. a reference run with the penalty at zero (plain SFT, short), which also measures the
   squared weight change S0 the penalty would see and the training loss L0;
2. one run per ratio r of `auto_grid` (default 0.01, 0.1, 1, 10: log-spaced) at
   coef = 2 r L0 / S0, the coefficient whose penalty at the reference run's weight change is
   r times its training loss, so the grid fits the model, the data and the penalty's units;
3. the chosen coefficient is the largest whose held-out instruction loss keeps at least
   1 - `auto_tolerance` (default 0.8) of the reference run's held-out improvement over the
   base model: loss <= ref + tolerance * (base - ref). That is the strongest pull toward the
   base that still learns the instructions. When no coefficient qualifies the smallest is
   taken, and the record says so.

Every run is a fingerprinted manifest job (`calibrate_<i>:<label>`): a rerun skips finished
runs and redoes only those whose inputs changed. The sweep's models are deleted once
measured; what is kept is `calibration/<label>/calibration.json` (every coefficient, its
held-out loss, its last logged training loss, penalty included, and the penalty's share of
it), which `recipes.json` and the report's recipes section show.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import Field, PositiveFloat, field_validator

from dtmerge.errors import ConfigError, DataError, DtmError
from dtmerge.recipes.base import RecipeParams
from dtmerge.rundir import RunDir, atomic_write_json, hash_obj, read_state_json, rerun_hint

AUTO = "auto"
DEFAULT_GRID = (0.01, 0.1, 1.0, 10.0)
DEFAULT_FRACTION = 0.2
DEFAULT_TOLERANCE = 0.2
HELDOUT_RECORDS = 256  # enough for a stable mean loss, cheap to score
CALIBRATION_FILE = "calibration.json"


class PenaltyParams(RecipeParams):
    """The strength parameters shared by l2 and ewc."""

    coef: Union[Literal["auto"], PositiveFloat] = Field(
        AUTO, description="lambda, or 'auto': chosen by a short sweep on the held-out "
                          "instruction data (recipes/calibrate.py)")
    auto_grid: list[PositiveFloat] = Field(
        list(DEFAULT_GRID), min_length=1,
        description="coef: auto tries coef = 2 r L0 / S0 for each ratio r: the penalty at the "
                    "unpenalised run's weight change is r times its training loss")
    auto_fraction: float = Field(DEFAULT_FRACTION, gt=0, le=1,
                                 description="coef: auto: each sweep run trains this fraction "
                                             "of the recipe's steps")
    auto_tolerance: float = Field(DEFAULT_TOLERANCE, gt=0, lt=1,
                                  description="coef: auto keeps the largest coef whose held-out "
                                              "loss gives up at most this share of the "
                                              "unpenalised run's improvement over the base")

    @field_validator("auto_grid")
    @classmethod
    def _sorted_unique(cls, grid: list[float]) -> list[float]:
        return sorted(set(grid))


def calibration_path(run: RunDir, label: str) -> Path:
    return run.root / "calibration" / label / CALIBRATION_FILE


def read_calibration(run: RunDir, label: str) -> dict | None:
    path = calibration_path(run, label)
    # the finished sweep runs stay in the manifest: a rerun only writes this file again
    return read_state_json(path, rerun_hint(f"dtm train {run.root}"), default=None)


def check_auto(recipe) -> None:
    """`coef: auto` needs the held-out split of the instruction data to choose on."""
    if recipe.params.coef == AUTO and not recipe.cfg.data.eval_fraction:
        raise ConfigError(
            f"recipes: {recipe.label} has coef: auto (the default), which chooses the penalty "
            "strength on the held-out split of the instruction data, but data.eval_fraction "
            "is 0: set data.eval_fraction (e.g. 0.02) or give a number, e.g. coef: 1.0")


def resolved_coef(recipe, run: RunDir) -> float | str:
    """The coefficient the recipe trains with: its number, or the sweep's choice ("auto"
    until the sweep has run; training refuses that)."""
    if recipe.params.coef != AUTO:
        return recipe.params.coef
    found = read_calibration(run, recipe.label)
    return found["coef"] if found else AUTO


def sweep_steps(cfg, n_examples: int, fraction: float) -> tuple[int, int]:
    """(steps of the recipe's own training run, steps of one sweep run)."""
    t = cfg.train
    if t.max_steps and t.max_steps > 0:
        full = t.max_steps
    else:
        per_epoch = math.ceil(n_examples / (t.batch_size * t.grad_accum))
        full = math.ceil(per_epoch * t.num_epochs)
    return full, max(1, round(full * fraction))


def calibrate(recipe, run: RunDir, penalty: dict[str, Any], log=print) -> dict:
    """Run (or resume) the sweep of `recipe` and write its calibration file.

    Args:
        recipe: An l2 or ewc recipe with `coef: auto`.
        penalty: The job's penalty spec without `coef` (kind, Fisher text...).

    Returns:
        The calibration record (also written to `calibration/<label>/calibration.json`).
    """
    from dtmerge.data.jsonl import read_jsonl

    p = recipe.params
    if not run.all_data.exists():
        raise DataError(f"{run.all_data} is missing: run `dtm disperse RUN` first (it "
                        "prepares the data)")
    run.require_finished("data", run.all_data)
    heldout = read_jsonl(run.heldout_data)[:HELDOUT_RECORDS] if run.heldout_data.exists() else []
    if not heldout:
        raise DataError(f"{run.heldout_data}: no held-out instruction records, which "
                        f"recipes: {recipe.label} (coef: auto) chooses on; raise "
                        "data.eval_fraction or give a number, e.g. coef: 1.0")
    full, steps = sweep_steps(recipe.cfg, len(read_jsonl(run.all_data)), p.auto_fraction)
    short = _short_config(recipe.cfg, steps)
    inputs = {"data": _hash(run.all_data), "heldout": _hash(run.heldout_data),
              "penalty": penalty, "steps": steps, "train": _train_key(short)}
    root = calibration_path(run, recipe.label).parent
    sweep = _Sweep(recipe, run, short, heldout, root, log)

    base_loss = sweep.job("calibrate_base", inputs,
                          lambda fp: {"heldout_loss": sweep.base_loss()})["heldout_loss"]
    ref = sweep.job("calibrate_ref", inputs,
                    lambda fp: sweep.train({**penalty, "coef": 0.0}, "ref", fp))
    if not ref.get("penalty_sum") or not ref.get("train_loss"):
        raise DataError(f"recipes: {recipe.label}: the unpenalised sweep run changed no weight "
                        "the penalty sees (or logged no loss); coef: auto cannot scale its grid: "
                        "give a number, e.g. coef: 1.0")
    coefs = [2.0 * ratio * ref["train_loss"] / ref["penalty_sum"] for ratio in p.auto_grid]
    points = [(i, {**inputs, "coef": coef}, {**penalty, "coef": coef})
              for i, coef in enumerate(coefs)]
    done = sweep.grid(points)
    runs = [{"ratio": ratio, "coef": coef, **_measured(record)}
            for ratio, coef, record in zip(p.auto_grid, coefs, done)]
    record = choose(runs, base_loss, ref["heldout_loss"], p.auto_tolerance)
    record.update({"reference": {"coef": 0.0, **_measured(ref)}, "base_heldout_loss": base_loss,
                   "sweep_steps": steps, "recipe_steps": full, "heldout_records": len(heldout)})
    atomic_write_json(calibration_path(run, recipe.label), record)
    log(f"[calibrate] {recipe.label}: coef {record['coef']:.4g} ({record['reason']})")
    return record


def choose(runs: list[dict], base_loss: float, ref_loss: float, tolerance: float) -> dict:
    """The largest coefficient whose held-out loss stays within `tolerance` of the reference
    run's improvement over the base (loss <= ref + tolerance * (base - ref))."""
    limit = ref_loss + tolerance * max(base_loss - ref_loss, 0.0)
    passing = [r for r in runs if r["heldout_loss"] <= limit]
    if passing:
        best = max(passing, key=lambda r: r["coef"])
        top = best is max(runs, key=lambda r: r["coef"])
        reason = (f"largest coefficient whose held-out loss {best['heldout_loss']:.4f} is within "
                  f"{limit:.4f}" + (" (the grid's largest: stronger ones were not tried)"
                                    if top else ""))
    else:
        best = min(runs, key=lambda r: r["coef"])
        reason = (f"no coefficient kept its held-out loss within {limit:.4f}: the smallest "
                  "was taken")
    return {"coef": best["coef"], "ratio": best["ratio"], "tolerance": tolerance,
            "heldout_limit": limit, "reason": reason, "sweep": runs}


def _measured(job: dict) -> dict:
    keys = ("heldout_loss", "train_loss", "penalty", "penalty_share", "seconds")
    return {k: job.get(k) for k in keys if job.get(k) is not None}


def _hash(path: Path) -> str:
    from dtmerge.rundir import hash_path

    return hash_path(path)


def _short_config(cfg, steps: int):
    """The run's config for one sweep run: `steps` steps, a few logged points, no trackers."""
    train = cfg.train.model_copy(update={"max_steps": steps,
                                         "logging_steps": max(1, steps // 10)})
    tracking = cfg.tracking.model_copy(update={"tensorboard": False, "mlflow": False})
    return cfg.model_copy(update={"train": train, "tracking": tracking})


def _train_key(cfg) -> dict:
    """What the sweep's training depends on (as the train stage fingerprints its jobs)."""
    from dtmerge.train.stage import _NOT_FINGERPRINTED

    return {"model": cfg.model.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json",
                                          exclude=_NOT_FINGERPRINTED | {"logging_steps"})}


class _Sweep:
    """The sweep's runs of one recipe: manifest jobs whose results live in the manifest."""

    def __init__(self, recipe, run: RunDir, cfg, heldout: list[dict], root: Path, log):
        self.recipe, self.run, self.cfg, self.heldout = recipe, run, cfg, heldout
        self.root, self.log = root, log

    def job(self, name: str, inputs: dict, work) -> dict:
        """Run `work(fingerprint)` as manifest job `<name>:<label>` unless done; its record."""
        fingerprint = self.fingerprint(inputs)
        self.recipe.step(self.run, name, inputs, lambda: work(fingerprint), log=self.log)
        return self.run.job(f"{name}:{self.recipe.label}") or {}

    def grid(self, points: list[tuple[int, dict, dict]]) -> list[dict]:
        """The grid's runs (index, inputs, penalty spec), those not done side by side as the
        train stage places its jobs (a process pool of one-thread runs for a small model on
        a CPU: 1.6x two-thread runs one after another); each run's record, in grid order."""
        from dtmerge.executors import run_jobs
        from dtmerge.process_guard import fault_point
        from dtmerge.train.stage import local_placement

        cfg_json = self.cfg.model_dump(mode="json")  # the sweep's short config
        names, calls, fingerprints = [], [], {}
        for i, inputs, spec in points:
            name = self.recipe.job_name(f"calibrate_{i}")
            names.append(name)
            fingerprints[name] = self.fingerprint(inputs)
            if self.run.needs_run(name, fingerprints[name], [], self.log):
                calls.append((name, (cfg_json, str(self.run.root), self.recipe.label, spec,
                                     f"coef_{i}", fingerprints[name])))

        def on_done(name, info):
            fault_point(f"finished {name}")
            self.run.mark_done(name, **info)

        failures = run_jobs(
            sweep_run_job, calls, local_placement(self.recipe.cfg, len(calls)),
            on_start=lambda name: self.run.mark_started(name, fingerprints[name]),
            on_done=on_done, on_fail=self.run.mark_failed)
        if failures:
            raise DtmError(f"recipes: {self.recipe.label}: coef: auto sweep runs failed: "
                           + "; ".join(failures) + ". Finished runs are kept; rerun the same "
                           "command to retry the rest")
        return [self.run.job(name) or {} for name in names]

    def fingerprint(self, inputs: dict) -> str:
        """A sweep run's fingerprint (as `Recipe.step` computes it for the same inputs)."""
        return hash_obj({"params": self.recipe.params.model_dump(mode="json"), "inputs": inputs})

    def base_loss(self) -> float:
        from dtmerge.evaluate.scoring import mean_completion_loss
        from dtmerge.models import load_model, load_tokenizer

        tok = load_tokenizer(self.cfg.model)
        return mean_completion_loss(load_model(self.cfg.model),
                                    encode_heldout(tok, self.heldout, self.cfg),
                                    tok.pad_token_id or 0)

    def train(self, spec: dict, name: str, fingerprint: str) -> dict:
        """One short penalised run: its held-out loss and the penalty's share of the loss."""
        return train_sweep_run(self.cfg, self.run, self.heldout, self.root / name,
                               f"{self.recipe.label}_{name}", spec, fingerprint)


def train_sweep_run(cfg, run: RunDir, heldout: list[dict], out: Path, job: str, spec: dict,
                    fingerprint: str) -> dict:
    """Train `cfg` (a sweep's short config) with the penalty `spec` into `out`, measure it on
    the held-out records, delete it: its held-out loss and the penalty's share of the loss."""
    from dtmerge.models import load_tokenizer
    from dtmerge.train.trainer import train_model

    tok = load_tokenizer(cfg.model)
    measure = heldout_at_end(encode_heldout(tok, heldout, cfg), tok.pad_token_id or 0)
    # the job's fingerprint stamps its checkpoints: a resumed run continues only its own
    info = train_model(cfg, run.all_data, out, job, callbacks=[measure],
                       fingerprint=fingerprint, spec={"penalty": spec})
    shutil.rmtree(out, ignore_errors=True)  # measured: the weights are not needed again
    last = measure.last_log
    loss = last.get("loss")
    share = (last["penalty"] / loss) if loss and "penalty" in last else None
    return {"heldout_loss": measure.heldout_loss, "train_loss": loss,
            "penalty": last.get("penalty"), "penalty_sum": last.get("penalty_sum"),
            "penalty_share": share, "steps": info.get("steps")}


def encode_heldout(tokenizer, heldout: list[dict], cfg) -> list:
    """The held-out records as the trainer would see them (cut at train.max_length)."""
    from dtmerge.evaluate.scoring import encode_record

    return [encode_record(tokenizer, r, cfg.train.max_length) for r in heldout]


def sweep_run_job(short_cfg_json: dict, run_root: str, label: str, spec: dict, name: str,
                  fingerprint: str, device: str | None) -> dict:
    """One grid run of recipe `label`'s sweep (the entry point of pool workers, hence plain
    arguments; `short_cfg_json` is the sweep's short run config): its manifest record."""
    from dtmerge.config import RunConfig
    from dtmerge.data.jsonl import read_jsonl
    from dtmerge.executors import pin_job_device

    pin_job_device(device)
    run = RunDir(run_root)
    heldout = read_jsonl(run.heldout_data)[:HELDOUT_RECORDS]
    out = calibration_path(run, label).parent / name
    return train_sweep_run(RunConfig.model_validate(short_cfg_json), run, heldout, out,
                           f"{label}_{name}", spec, fingerprint)


def heldout_at_end(encoded, pad_id: int):
    """A TrainerCallback keeping the last logged training losses and scoring the held-out
    records when training ends (built here: transformers is imported only when training)."""
    from transformers import TrainerCallback

    from dtmerge.evaluate.scoring import mean_completion_loss

    class HeldoutAtEnd(TrainerCallback):
        last_log: dict = {}
        heldout_loss: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.last_log = dict(logs)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.heldout_loss = mean_completion_loss(model, encoded, pad_id)

    return HeldoutAtEnd()


def describe_calibration(recipe, run: RunDir, described: dict) -> dict:
    """`recipes.json`'s entry plus the coefficient trained with, the sweep that chose it
    (coef: auto) and the penalty's share of the loss at the end of the recipe's training."""
    out = {**described, "coef": resolved_coef(recipe, run)}
    if recipe.params.coef == AUTO:
        out["calibration"] = read_calibration(run, recipe.label)
    share = final_penalty_share(run.model(recipe.label))
    if share is not None:
        out["penalty_share"] = share
    return out


def final_penalty_share(model_dir: Path) -> float | None:
    """penalty / loss at the last logged step of a trained model (its trainer_state.json)."""
    state = Path(model_dir) / "trainer_state.json"
    if not state.is_file():
        return None
    logged = [h for h in json.loads(state.read_text()).get("log_history", [])
              if "penalty" in h and h.get("loss")]
    return logged[-1]["penalty"] / logged[-1]["loss"] if logged else None
