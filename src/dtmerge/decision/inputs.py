"""A run's files -> the decision's inputs: every scored variant on validation items.

Variants: the run's eval/<variant>.json (recipes, DTM, best checkpoints, base, SFT, the
interpolation points) and the frontier's candidates (frontier/eval/<name>.validation.json).
Validation items: the run's recorded split (eval/split.json); a run without one is split
here by `answer.validation_fraction`, and the report's Answer says so. Seeds: the run's seed
replicates (`seeds: N`, <run>/seeds/seed<k>/) enter as `<name>@seed<k>`, replicates of `<name>`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from dtmerge.decision.draws import Plane, draw
from dtmerge.decision.rule import Decision, Settings, decide
from dtmerge.evaluate.split import ItemSplit, read_split_file
from dtmerge.results.records import (
    ReportError, VariantResult, interp_t, lm_loss_tasks, load_eval_dir, load_eval_file,
    restrict_variant, split_tasks, sub_index,
)
from dtmerge.rundir import RunDir, read_state_json, rerun_hint

FRONTIER_FILE = Path("frontier") / "frontier.json"
_SEED = re.compile(r"^(?P<name>.+)@seed(?P<seed>\d+)$")


@dataclass
class RunDecision:
    """The decision and what it was made from (the confirmation on test items reuses it)."""

    decision: Decision
    split: ItemSplit
    split_recorded: bool  # False: the run had no split; the decision made its own
    planes: list[Plane]
    instruction: list[str]
    line: dict[str, float]

    def to_dict(self) -> dict:
        return {**self.decision.to_dict(),
                "split": {**self.split.to_json(), "recorded": self.split_recorded},
                "instruction_tasks": self.instruction}


def base_name(variant: str) -> str:
    m = _SEED.match(variant)
    return m.group("name") if m else variant


def group_seeds(variants: dict[str, VariantResult]) -> dict[str, list[VariantResult]]:
    out: dict[str, list[VariantResult]] = {}
    for name, v in variants.items():
        out.setdefault(base_name(name), []).append(v)
    return out


SEEDS_DIR = "seeds"  # written by the pipeline: <run>/seeds/seed<k>/eval/<variant>.json


def run_variants(run: RunDir) -> dict[str, VariantResult]:
    """The run's eval results, and its seed replicates' as `<variant>@seed<k>`."""
    eval_dir = run.root / "eval"
    out = load_eval_dir(eval_dir) if eval_dir.is_dir() else {}
    for replicate in sorted((run.root / SEEDS_DIR).glob("seed*/eval")):
        k = replicate.parent.name.removeprefix("seed")
        if k.isdigit():
            out.update({f"{n}@seed{k}": dataclasses.replace(v, seed=int(k))
                        for n, v in load_eval_dir(replicate).items()})
    return out


def line_points(run: RunDir, names: list[str]) -> dict[str, float]:
    """Variant -> its t on the base->SFT line: base, sft, interp_<t>, and wise_ft recipes
    (a point of the line, not a method)."""
    line = {n: t for n in names if (t := 0.0 if n == "base" else 1.0 if n == "sft"
                                    else interp_t(n)) is not None}
    recipes = run.root / "recipes.json"
    if recipes.is_file():
        described = read_state_json(recipes, rerun_hint(f"dtm merge {run.root}"))
        for label, info in described.items():
            if isinstance(info, dict) and info.get("recipe") == "wise_ft" and label in names:
                line[label] = float((info.get("params") or {}).get("t", 0.5))
    return line


def is_candidate(name: str, line: dict[str, float]) -> bool:
    """A model one could ship instead of training less: not the line, not a sub-model."""
    return name not in line and sub_index(name) is None


def frontier_results(run: RunDir, which: str) -> dict[str, VariantResult]:
    """The frontier's candidates scored on `which` items ("validation" or "test")."""
    path = run.root / FRONTIER_FILE
    if not path.is_file():
        return {}
    try:
        summary = read_state_json(path, rerun_hint(f"dtm frontier {run.root}"))
        names = [c["name"] for c in summary["candidates"]]
    except (KeyError, TypeError):
        raise ReportError(f"{path}: damaged (not the file `dtm frontier` writes); rerun "
                          f"`dtm frontier {run.root}` to rewrite it") from None
    out = {}
    for name in names:
        f = run.root / "frontier" / "eval" / f"{name}.{which}.json"
        if f.is_file():
            out[name] = load_eval_file(f, name)
    return out


def run_split(run: RunDir, answer, split_seed: int = 0) -> tuple[ItemSplit, bool]:
    recorded = read_split_file(run.root / "eval")
    if recorded is not None:
        return recorded, True
    return ItemSplit(float(answer.validation_fraction), int(split_seed)), False


def planes_of(variants: dict[str, VariantResult], knowledge: list[str] | None,
              instruction: list[str] | None) -> tuple[list[str], list[Plane]]:
    """(instruction tasks, the y planes): knowledge mean, then each held-out loss task."""
    know, instr = split_tasks(variants, knowledge, instruction)
    planes = [Plane("knowledge", tuple(know))] if know else []
    planes += [Plane(f"loss on {t}", (t,), True) for t in lm_loss_tasks(variants)]
    return instr, planes


def on_part(variants: dict[str, VariantResult], split: ItemSplit, part: str
            ) -> dict[str, VariantResult]:
    out = {}
    for name, v in variants.items():
        try:
            out[name] = restrict_variant(v, split, part)
        except ReportError:
            continue  # a variant with no item of this part on some task cannot be compared
    return out


def decide_run(run: RunDir, answer, knowledge: list[str] | None = None,
               instruction: list[str] | None = None, n_boot: int = 2000, seed: int = 0,
               split_seed: int = 0, extra: dict[str, VariantResult] | None = None
               ) -> RunDecision | None:
    """The decision of `run` on validation items; None when it has nothing to decide on
    (no eval results, or no instruction-following task to read the target on).

    `extra`: validation results of more candidates (the frontier passes its own before it
    writes frontier.json); by default the frontier's recorded candidates are read.
    """
    variants = run_variants(run)
    split, recorded = run_split(run, answer, split_seed)
    validation = on_part(variants, split, "validation")
    more = frontier_results(run, "validation") if extra is None else extra
    validation.update({n: v for n, v in on_part(more, split, "validation").items()
                       if n not in validation})
    if not validation:
        return None
    line = line_points(run, list(group_seeds(validation)))
    made = decide_variants(validation, line, answer, knowledge, instruction, n_boot, seed)
    if made is None:
        return None
    decision, planes, instr = made
    if not recorded:
        decision.notes.append(
            f"The run has no item split (eval.validation_fraction): the decision used "
            f"{split.fraction:g} of each task's items (by hash, seed {split.seed}) and its "
            "confirmation the rest.")
    return RunDecision(decision, split, recorded, planes, instr, line)


def decide_variants(variants: dict[str, VariantResult], line: dict[str, float], answer,
                    knowledge: list[str] | None = None, instruction: list[str] | None = None,
                    n_boot: int = 2000, seed: int = 0
                    ) -> tuple[Decision, list[Plane], list[str]] | None:
    """The rule over `variants` as given (already on the items to decide on; seed replicates
    named `<name>@seed<k>`) with `line` (variant -> t); (decision, planes, instruction tasks),
    or None without an instruction task or a y plane. The frontier's first pass calls it on
    its subsample of validation items."""
    instr, planes = planes_of(variants, knowledge, instruction)
    if not instr or not planes:
        return None
    replicates = group_seeds(variants)
    candidates = [n for n in replicates if is_candidate(n, line)]
    draws = draw(replicates, instr, planes, n_boot, seed)
    return decide(draws, candidates, line, planes, Settings.from_config(answer)), planes, instr
