"""A/B comparison of two evaluated models: the library behind `dtm compare`.

Either side may be a run directory (its eval/<variant>.json, or with variant "answer" the model
the run's one decision ships, `dtmerge.decision`), an evaluation JSON file, or a model
directory (evaluated here with `dtmerge.evaluate.evaluate_model`). For a run directory the
comparison also states that run's decision, so `dtm compare` never advises apart from the
report, `dtm frontier` and `dtm export RUN answer`. Benchmarks are
compared on the items both sides scored, with a paired bootstrap interval; a benchmark is a
regression when B is significantly worse than A (the 95% interval lies below zero) and the
drop is larger than the tolerance, so a CI gate ignores both noise and negligible drops.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from dtmerge.results.analysis import compare_variants
from dtmerge.report.document import Table
from dtmerge.results.records import ReportError, VariantResult, load_eval_file
from dtmerge.evaluate.stats import PairedDiff, format_p


@dataclass
class BenchmarkDiff:
    task: str
    score_a: float
    score_b: float
    diff: PairedDiff
    regression: bool

    @property
    def verdict(self) -> str:
        if self.regression:
            return "REGRESSION"
        if self.diff.significant:
            return "better" if self.diff.better else "worse (within tolerance)"
        return "no significant change"


@dataclass
class Comparison:
    a: str
    b: str
    tolerance: float
    rows: list[BenchmarkDiff]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [r.task for r in self.rows if r.regression]

    def to_dict(self) -> dict:
        return {
            "a": self.a, "b": self.b, "tolerance": self.tolerance,
            "regressions": self.regressions, "only_in_a": self.only_in_a, "only_in_b": self.only_in_b,
            "benchmarks": {r.task: {"a": r.score_a, "b": r.score_b, "verdict": r.verdict,
                                    "regression": r.regression, **r.diff.to_dict()}
                           for r in self.rows},
        }

    def table(self) -> Table:
        rows = [[r.task + ("" if r.diff.higher_is_better else " (lower is better)"), f"{r.score_a:.3f}", f"{r.score_b:.3f}", f"{r.diff.mean:+.3f}",
                 f"[{r.diff.low:+.3f}, {r.diff.high:+.3f}]", format_p(r.diff.p_value),
                 str(r.diff.n), r.verdict] for r in self.rows]
        return Table(["benchmark", "A", "B", "B − A", "95% interval", "p", "items", "verdict"],
                     rows, f"A = {self.a}\nB = {self.b}".replace("\n", "   "))


def compare_results(a: VariantResult, b: VariantResult, tolerance: float = 0.01,
                    n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Per-benchmark B - A with paired intervals and the regression verdict.

    Raises:
        ReportError: the two results share no benchmark.
    """
    if tolerance < 0:
        raise ReportError(f"--tolerance must be >= 0, got {tolerance}")
    diffs = compare_variants(a, b, n_boot=n_boot, seed=seed)
    if not diffs:
        raise ReportError(
            f"A ({a.name}: {', '.join(a.tasks) or 'no tasks'}) and B ({b.name}: "
            f"{', '.join(b.tasks) or 'no tasks'}) share no benchmark: evaluate both on the same tasks")
    # A regression is B significantly worse in the metric's own direction (a rise in bits per
    # byte, a fall in accuracy) by more than the tolerance.
    rows = [BenchmarkDiff(t, a.tasks[t].score, b.tasks[t].score, d,
                          regression=d.significant and d.worse and abs(d.mean) > tolerance)
            for t, d in diffs.items()]
    return Comparison(_label(a), _label(b), tolerance, rows,
                      only_in_a=[t for t in a.tasks if t not in b.tasks],
                      only_in_b=[t for t in b.tasks if t not in a.tasks])


def _label(v: VariantResult) -> str:
    return str(v.path) if v.path else v.name


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").exists() or (path / "adapter_config.json").exists())


def load_eval_config(path: str | Path):
    """EvalConfig from a YAML file: a whole run config (its `eval` section), a file with an
    `eval` section, or the bare section."""
    from dtmerge.config import EvalConfig, RunConfig, format_validation_error, read_yaml_mapping
    from dtmerge.errors import ConfigError
    from pydantic import ValidationError

    data = read_yaml_mapping(path, "--eval-config")
    try:
        if "model" in data and "data" in data:
            return RunConfig.model_validate(data).eval
        return EvalConfig.model_validate(data.get("eval", data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None


ANSWER = "answer"  # --variant answer: the model the run's decision ships


@dataclass
class RunAnswer:
    """A run directory's decision, as `dtm compare` states it."""

    run: str
    choice: str
    headline: str
    file: Path | None  # the choice's eval file (None: the decision chose nothing scored)


def run_answer(path: str | Path) -> RunAnswer | None:
    """The one decision of the run at `path` (its config.yaml's answer and report settings,
    else the defaults); None when the run cannot decide (no eval results, or no
    instruction-following task to read the target on)."""
    from dtmerge.config import AnswerConfig, ReportConfig
    from dtmerge.decision import decide_run
    from dtmerge.decision.inputs import FRONTIER_FILE
    from dtmerge.rundir import RunDir, load_run_config

    run = RunDir(path)
    if (run.root / "config.yaml").is_file():
        cfg = load_run_config(run.root)
        answer, report, seed, split_seed = cfg.answer, cfg.report, cfg.seed, cfg.eval.split_seed
    else:
        answer, report, seed, split_seed = AnswerConfig(), ReportConfig(), 0, 0
    rd = decide_run(run, answer, report.knowledge_tasks, report.instruction_tasks,
                    report.bootstrap_samples, seed, split_seed)
    if rd is None:
        return None
    choice = rd.decision.choice
    frontier = run.root / FRONTIER_FILE.parent / "eval"
    file = next((f for f in (run.eval_file(choice), frontier / f"{choice}.test.json",
                             frontier / f"{choice}.validation.json") if f.is_file()), None)
    return RunAnswer(str(run.root), choice, rd.decision.headline, file)


def load_side(spec: str, variant: str = "dtm", eval_config: str | None = None,
              base_model: str | None = None, label: str = "A", workdir: Path | None = None,
              answer: RunAnswer | None = None) -> VariantResult:
    """Resolve one side of a comparison to evaluation results.

    Args:
        spec: a run directory, an eval JSON file, or a model (or LoRA adapter) directory.
        variant: which eval/<variant>.json of a run directory; "answer": the model the run's
            decision ships (a frontier candidate: its scored items, so the comparison is on
            the items both sides share).
        eval_config: YAML with the evaluation settings, required for a model directory.
        base_model: base model of a LoRA adapter directory.
        label: "A" or "B", for messages and the variant name of evaluated models.
        workdir: where evaluation results of model directories are written.
        answer: the run's decision when the caller has made it already (`run_answer`).

    Raises:
        ReportError: the path does not exist or is none of the accepted kinds.
    """
    path = Path(spec)
    if path.is_file():
        return load_eval_file(path)
    if not path.exists():
        raise ReportError(f"{label}: {spec} does not exist (give a run directory, an eval JSON "
                          "file or a model directory)")
    if (path / "eval").is_dir() or (path / "manifest.json").exists():
        if variant == ANSWER:
            answer = answer or run_answer(path)
            if answer is None or answer.file is None:
                why = ("it cannot decide (it needs an instruction-following task and SFT "
                       "scored)" if answer is None else f"its decision ships {answer.choice}, "
                       "which has no scored results")
                raise ReportError(f"{label}: run {path}: --variant answer, but {why}; pick a "
                                  "variant with --variant")
            return load_eval_file(answer.file, answer.choice)
        file = path / "eval" / f"{variant}.json"
        if not file.exists():
            have = sorted(p.stem for p in (path / "eval").glob("*.json")) if (path / "eval").is_dir() else []
            raise ReportError(f"{label}: run {path} has no eval/{variant}.json (has: "
                              f"{', '.join(have) or 'none'}); run `dtm eval` or pick --variant")
        return load_eval_file(file)
    if is_model_dir(path):
        if not eval_config:
            raise ReportError(f"{label}: {path} is a model directory; give --eval-config YAML "
                              "with the evaluation settings so both sides are scored identically")
        from dtmerge.evaluate import evaluate_model

        out = Path(workdir or tempfile.mkdtemp(prefix="dtm-compare-")) / f"{label}.json"
        evaluate_model(path, load_eval_config(eval_config), out, variant=label, base_model=base_model)
        return load_eval_file(out)
    raise ReportError(f"{label}: {path} is not a run directory (no eval/ or manifest.json), an "
                      "eval JSON file, or a model directory (no config.json / adapter_config.json)")
