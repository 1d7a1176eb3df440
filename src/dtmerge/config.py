"""Typed configuration of a dtmerge run.

One YAML file maps onto `RunConfig`; every section is a frozen pydantic model that rejects
unknown keys, so a typo is reported with the key and the allowed names instead of being
ignored. `load_config` applies `key.sub=value` overrides from the command line before
validation, and reports every error at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dtmerge.errors import ConfigError
from dtmerge.sft_fields import check_sft_passthrough, sft_aliases_to_ours


class _Section(BaseModel):
    # attribute docstrings become field descriptions (`dtm config keys` lists them)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ModelConfig(_Section):
    """The base model every sub-model starts from."""

    path: str = Field(description="Local Hugging Face directory, Hub id, or a .gguf file")
    gguf_file: str | None = Field(None, description="GGUF file name inside `path` (a directory)")
    tokenizer: str | None = Field(None, description="Tokenizer location if not with the model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: fp32 on CPU, bf16 (or fp16) on a GPU that supports it"
    )
    revision: str | None = None
    """Hub revision (branch, tag or commit) of model.path"""
    trust_remote_code: bool = False
    """Allow the model's own Python code from the Hub (only for models you trust)"""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, slower"""
    load_in_4bit: bool = Field(False, description="QLoRA through bitsandbytes (GPU only)")
    chat_template: Literal["auto", "alpaca", "model"] = Field(
        "auto",
        description="auto: the model's own chat template if it has one, else the Alpaca template",
    )


class MixSource(_Section):
    """A further data set mixed into `data.path`'s (each example keeps its source name)."""

    path: str = Field(description="JSON/JSONL/CSV/Parquet file, save_to_disk dir, or Hub id")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion"] = "auto"
    split: str = "train"
    ratio: float = Field(1.0, gt=0, description="Share of its examples used (>1 repeats them)")
    name: str | None = Field(None, description="Source name stored as `dataset` (default: file stem)")


class DataConfig(_Section):
    """Where the instruction data comes from and how it is normalised."""

    path: str = Field(description="JSON/JSONL/CSV/Parquet file, save_to_disk dir, or Hub id")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion"] = "auto"
    """Data layout; auto detects it from the first record"""
    split: str = "train"
    """Dataset split to read when data.path is a Hub dataset"""
    first_turn_only: bool = Field(True, description="Keep only the first turn (as the paper)")
    max_examples: int | None = Field(None, ge=1)
    """Use at most this many examples (after shuffling with data.seed)"""
    eval_fraction: float = Field(
        0.02, ge=0.0, lt=0.5, description="Held-out share for validation loss (bias monitor)"
    )
    seed: int = 0
    """Seed of the shuffle and the held-out split"""
    mix: list[MixSource] = Field(
        default_factory=list, description="Further data sets mixed in at a ratio each")


class DisperseConfig(_Section):
    """How the data is split into K portions."""

    strategy: str = Field("random", description="random | kmeans | field")
    num_portions: int = Field(4, ge=1, description="K")
    embed_on: Literal["instruction", "response", "both"] = "response"
    """Which text the clustering strategies embed"""
    encoder: str = Field("tfidf", description="tfidf, or a sentence-transformers model")
    field: str | None = Field(None, description="Column to group by for strategy=field")
    seed: int = 0
    """Seed of the dispersal (random split, k-means init)"""


class LoraSettings(_Section):
    r: int = Field(16, ge=1)
    alpha: float = 16
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field(
        "mlp", description="Preset (mlp, attention, all-linear) or explicit module names"
    )


class TrainConfig(_Section):
    """Hyperparameters shared by every sub-model and the SFT baseline.

    Any other field of TRL's `SFTConfig` (e.g. `optim`, `neftune_noise_alpha`, `packing`) may
    be given here under TRL's own name and is passed straight through to every job.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    learning_rate: float = Field(3e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_steps: int = Field(100, ge=0)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Overrides num_epochs when > 0")
    batch_size: int = Field(4, ge=1, description="Per-device batch size")
    grad_accum: int = Field(4, ge=1, description="Effective batch = batch_size * grad_accum")
    max_length: int = Field(1024, ge=8)
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 0.3
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1, description="Checkpoint interval (for resume)")
    sft_baseline: bool = Field(True, description="Also train plain SFT on all the data")
    parallel_jobs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="Sub-models trained at once (process pool); auto: one per core, one "
        "thread each, for small models on a CPU (else 1)"
    )
    devices: list[str] | None = Field(None, description="e.g. ['0','1']: one job per device")
    executor: Literal["local", "ray"] = Field(
        "local", description="local: in this process or a process pool; ray: one Ray task per job"
    )
    ray_address: str | None = Field(None, description="Ray cluster to join (default: start local)")
    gpus_per_job: float = Field(0, ge=0, description="GPUs reserved per Ray task")
    cpus_per_job: float = Field(1, gt=0, description="CPUs reserved per Ray task")
    threads_per_job: int | None = Field(
        None, ge=1, description="torch threads of each training/eval job; unset: the cores it "
        "was given (Ray CPUs, or this machine's cores / jobs at once)"
    )
    max_retries: int = Field(
        2, ge=0, description="Ray: reruns of a job whose worker or node died (resumes from its checkpoint)"
    )
    shared_storage: bool | None = Field(
        None, description="Ray: do all nodes see the run dir? unset: each task checks; false: "
        "LoRA outputs travel back through Ray"
    )
    trainer_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keys passed to TRL's SFTConfig"
    )
    joint: bool = Field(
        False, description="LoRA: train this stage's plain LoRA jobs in one process over one "
        "loaded base model, one adapter after another (same results as separate jobs; "
        "full fine-tuning and loss-changing recipes fall back to separate jobs); see "
        "docs/joint-training.md"
    )

    @model_validator(mode="before")
    @classmethod
    def _trl_names(cls, data: Any) -> Any:
        return sft_aliases_to_ours(data)

    @model_validator(mode="after")
    def _check_passthrough(self) -> "TrainConfig":
        check_sft_passthrough(sorted(self.model_extra or {}), sorted(type(self).model_fields))
        return self

    @property
    def sft_passthrough(self) -> dict[str, Any]:
        """The SFTConfig fields given under TRL's names, for every job."""
        return dict(self.model_extra or {})


class MergeConfig(_Section):
    """How sub-models are combined."""

    method: str = Field("linear", description="Merge method; see `dtm merge --list`")
    weights: list[float] | None = Field(None, description="Per sub-model weights (default 1/K)")
    params: dict[str, Any] = Field(default_factory=dict, description="Method parameters")
    base_interpolation: float | None = Field(
        None, ge=0.0, le=1.0, description="WiSE-FT knob: base + t * (merged - base)"
    )
    shard_size: str = "2GB"
    """Largest safetensors shard the merged model is written in"""
    as_adapter: bool = Field(
        False, description="Write models/dtm as one rank-concatenated LoRA adapter (LoRA "
        "sub-models and a method linear in the updates)")


class EvalConfig(_Section):
    """Which benchmarks score every variant, with identical settings."""

    tasks: list[str] = Field(default_factory=list, description="lm-eval task names or groups")
    include_path: list[str] = Field(default_factory=list, description="Local task directories")
    num_fewshot: int | dict[str, int] | None = Field(
        None, description="Few-shot examples: one count for every task, or per task "
              "({gsm8k: 8, mmlu: 5}; a task left out keeps its default); null: each task's "
              "default")
    apply_chat_template: bool = False
    """Wrap prompts in the model's chat template (same for every variant)"""
    batch_size: int | str = 16
    """lm-eval batch size (or 'auto')"""
    limit: int | float | None = None
    """Items per task (an int) or share of each task (a float), for quick runs"""
    variants: list[str] = Field(
        default_factory=lambda: ["base", "sft", "dtm", "submodels", "interpolation"],
        description="Which models to score: base, sft, dtm, submodels, interpolation, best",
    )
    interpolation: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75],
        description="Base-to-SFT weight interpolation coefficients (the trade-off line)",
    )
    device: str = "auto"
    """Device for evaluation: auto, cpu, cuda, cuda:1..."""
    gen_kwargs: dict[str, Any] | None = Field(
        None, description="Generation settings for generate_until tasks (same for every variant)"
    )
    allow_code_execution: bool = Field(
        False, description="Let code tasks (humaneval, mbpp) run model-written code on this machine"
    )
    judge_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for an LLM judge (off when unset)"
    )
    judge_model: str | None = Field(None, description="Model name sent to the judge endpoint")
    judge_questions: str | None = Field(
        None, description="JSONL of open-ended questions ({question, reference?}) for the judge"
    )
    validation_fraction: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="Share of each task's items held out as validation (choices such as "
        "`dtm frontier` are made on them; the report's numbers are on the rest, test); off: unset",
    )
    split_seed: int = Field(0, description="Seed of the validation/test item split")
    executor: Literal["local", "ray"] = Field(
        "local", description="local: here or a process pool; ray: one Ray task per variant "
        "(train.ray_address, train.max_retries)"
    )
    parallel_jobs: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        1, description="Variants scored at once (process pool); auto: one per core for small "
        "models on a CPU (else 1)"
    )
    cpus_per_job: float = Field(1, gt=0, description="CPUs reserved per Ray evaluation task")
    gpus_per_job: float = Field(0, ge=0, description="GPUs reserved per Ray evaluation task")

    @model_validator(mode="after")
    def _fewshot_tasks(self) -> "EvalConfig":
        counts = self.num_fewshot if isinstance(self.num_fewshot, dict) else \
            {"(every task)": self.num_fewshot or 0}
        negative = sorted(name for name, k in counts.items() if k < 0)
        if negative:
            raise ValueError(f"eval.num_fewshot must be 0 or more (negative for "
                             f"{', '.join(negative)})")
        return self  # task names are checked against eval.tasks with the inputs (dryrun.checks)


class MonitorConfig(_Section):
    """Knowledge monitor attached to every training job (the paper's pilot study, built in)."""

    enabled: bool = False
    """Probe knowledge during every training job"""
    every_steps: int = Field(50, ge=1, description="Probe interval in optimizer steps")
    probe_tasks: list[str] = Field(default_factory=list, description="Tasks sampled as probe")
    probe_size: int = Field(100, ge=1, description="Items sampled from the probe tasks")
    drop_threshold: float = Field(0.05, ge=0.0, description="Alert when knowledge falls this far below its peak")
    stop_on_drop: bool = False
    """Stop training when the knowledge alert fires (then restore the kept best)"""
    keep_best: bool = Field(
        True, description="Keep the best probed step's weights as model <job>_best (scored with eval.variants: best)"
    )
    best_by: Literal["tradeoff", "heldout_loss", "probe_acc"] = Field(
        "tradeoff", description="What picks the best step: tradeoff (the most knowledge probed "
        "on validation items among steps whose held-out loss is within best_loss_margin of the "
        "final step's), held-out loss (lower) or probe accuracy"
    )
    best_loss_margin: float = Field(
        0.05, ge=0.0, description="best_by tradeoff: relative held-out loss margin over the final "
        "step's (the instruction level the job reaches)"
    )
    patience: int | None = Field(
        None, ge=1, description="Stop after this many probes without a better best_by score, then restore the best"
    )
    ratio_threshold: float | None = Field(
        3.0, gt=0, description="Alert when train-loss drop / held-out-loss drop exceeds this (the paper's bias meter)"
    )
    alert_command: str | None = Field(
        None, description="Shell command run on each alert (alert as JSON on stdin and $DTM_ALERT_TEXT)"
    )
    alert_webhook: str | None = Field(
        None, description="URL that receives each alert as a JSON POST {\"text\": ...} (Slack-compatible)"
    )


class TrackingConfig(_Section):
    mlflow: bool = False
    """Log parameters, scores and the report to MLflow"""
    mlflow_tracking_uri: str | None = Field(None, description="Default: sqlite in the run dir")
    tensorboard: bool = False
    """Write TensorBoard curves of each training job"""
    wandb: bool = False
    """Log to Weights & Biases what tracking.mlflow logs: a run per training job (live curves)
    and, after the report, the run (config, scores, tax table, report) and each trained model,
    grouped under the run's name. WANDB_MODE=offline writes them under the run directory."""
    wandb_project: str | None = Field(None, description="W&B project (default: dtmerge)")
    wandb_entity: str | None = Field(None, description="W&B user or team (default: yours)")


class ReportConfig(_Section):
    knowledge_tasks: list[str] = Field(
        default_factory=list, description="Tasks averaged as knowledge/reasoning"
    )
    instruction_tasks: list[str] = Field(
        default_factory=list, description="Tasks averaged as instruction following"
    )
    bootstrap_samples: int = Field(2000, ge=100)
    """Paired bootstrap resamples for every interval in the report"""


class AnswerConfig(_Section):
    """What to ship: the one decision the report's Answer, `dtm frontier` and `dtm export RUN
    answer` share (see docs/decision.md)."""

    target: str | float = Field(
        "match_sft", description="match_sft: SFT's instruction following; a number: that "
        "instruction score; max_knowledge: the most knowledge at answer.min_instruction")
    margin: float = Field(
        0.05, ge=0.0, description="Non-inferiority margin on instruction following: a candidate "
        "meets the target when its paired lower bound is above target - margin")
    min_instruction: float | None = Field(
        None, description="Instruction level of target max_knowledge")
    alpha: float = Field(
        0.05, gt=0.0, lt=0.5, description="One-sided error rate of the whole family of "
        "candidates (Holm-corrected)")
    validation_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="Validation share used by the decision when the run "
        "has no item split (eval.validation_fraction unset)")

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if isinstance(v, str) and v not in ("match_sft", "max_knowledge"):
            try:
                return float(v)
            except ValueError:
                raise ValueError(f"answer.target must be match_sft, max_knowledge or an "
                                 f"instruction score such as 0.6, got {v!r}") from None
        return v

    @model_validator(mode="after")
    def _level(self) -> "AnswerConfig":
        if self.target == "max_knowledge" and self.min_instruction is None:
            raise ValueError("answer.target max_knowledge needs answer.min_instruction (the "
                             "instruction-following score the model must keep)")
        return self


class RecipeEntry(BaseModel):
    """One recipe of `recipes:`: a registered name, an optional label, and the recipe's own
    parameters (checked against the recipe's parameter model before any stage runs)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="A registered recipe: sft, dtm, wise_ft, l2, ewc, replay, ...")
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                              description="Model/variant name (default: the recipe name)")

    @property
    def variant(self) -> str:
        return self.label or self.name

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# `dtm` entry parameters that are the `disperse:` / `merge:` sections of the default DTM.
_DTM_DISPERSE_KEYS = {"num_portions", "strategy", "embed_on", "encoder", "field"}
_DTM_MERGE_KEYS = {"merge_method": "method", "merge_params": "params", "merge_weights": "weights"}


def _fold_default_dtm(data: dict[str, Any]) -> dict[str, Any]:
    """`{name: dtm, num_portions: 4}` (label dtm) is the run's own DTM: its settings become the
    `disperse:`/`merge:` sections, so the disperse and merge stages see one truth."""
    entries = data.get("recipes")
    if not isinstance(entries, list):
        return data
    data = dict(data)
    out = []
    for entry in entries:
        if not (isinstance(entry, dict) and entry.get("name") == "dtm"
                and entry.get("label") in (None, "dtm")):
            out.append(entry)
            continue
        entry = dict(entry)
        for key in sorted(set(entry) & (_DTM_DISPERSE_KEYS | set(_DTM_MERGE_KEYS))):
            section, field = (("disperse", key) if key in _DTM_DISPERSE_KEYS
                              else ("merge", _DTM_MERGE_KEYS[key]))
            sec = dict(data.get(section) or {})
            if field in sec and sec[field] != entry[key]:
                raise ValueError(f"recipes: dtm sets {key}={entry[key]!r} but {section}.{field} is "
                                 f"{sec[field]!r}; give it in one place")
            sec[field] = entry.pop(key)
            data[section] = sec
        out.append(entry)
    data["recipes"] = out
    return data


class FrontierConfig(_Section):
    """`dtm frontier`: the grid of merged candidates built from a run's trained sub-models."""

    methods: list[str] = Field(
        default_factory=lambda: ["linear", "ties", "dare_linear", "task_arithmetic"],
        description="Merge methods of the grid (fisher too, if wanted: it estimates Fishers)")
    scales: list[float] = Field(
        default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 2.0],
        description="Update scales lambda: base + lambda * (merged - base); > 1 extrapolates")
    interpolations: list[float] = Field(
        default_factory=list,
        description="Base interpolation t of each merged candidate (scale lambda * t)")
    subsets: list[list[int]] = Field(
        default_factory=list, description="Extra sub-model subsets (indices) besides all K")
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Method parameters per method, e.g. {ties: {density: 0.3}}")
    budget: int | None = Field(None, ge=1, description="Most candidates scored (nearest lambda=1 first)")
    prune_fraction: float | None = Field(
        0.25, gt=0.0, le=1.0,
        description="Share of validation items of the cheap first pass, which leaves out "
                    "candidates its subsample already shows below the line or short of the "
                    "target (unset: no first pass)")
    prune_keep: int = Field(6, ge=1, description="Most candidates the first pass lets through "
                                                 "(the strongest evidence first)")
    keep_models: bool = Field(False, description="Keep every candidate's merged model")

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        moved = [k for k in ("target", "knowledge_weight") if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(
                f"frontier.{moved[0]} is gone: what to ship is one decision for the report, "
                "`dtm frontier` and `dtm export RUN answer`; set answer.target (match_sft, "
                "max_knowledge with answer.min_instruction, or an instruction score) instead")
        return data


class RunConfig(_Section):
    """A whole Disperse-Then-Merge run."""

    name: str = Field(description="Run name; outputs go to <runs_dir>/<name>")
    runs_dir: str = "runs"
    """Directory that holds the run directories"""
    seed: int = 0
    """Seed of the report's bootstrap and the monitor's probe sample"""
    seeds: int = Field(
        1, ge=1, description="Training seeds: each recipe is trained this many times (seed "
        "runs under <run>/seeds/); the decision uses their spread as well as item noise")
    model: ModelConfig
    data: DataConfig
    disperse: DisperseConfig = DisperseConfig()
    train: TrainConfig = TrainConfig()
    merge: MergeConfig = MergeConfig()
    eval: EvalConfig = EvalConfig()
    report: ReportConfig = ReportConfig()
    monitor: MonitorConfig = MonitorConfig()
    tracking: TrackingConfig = TrackingConfig()
    frontier: FrontierConfig = FrontierConfig()
    answer: AnswerConfig = AnswerConfig()
    recipes: list[RecipeEntry] | None = Field(
        None, description="Recipes trained and scored side by side (default: sft and dtm)")

    @model_validator(mode="before")
    @classmethod
    def _fold_recipes(cls, data: Any) -> Any:
        return _fold_default_dtm(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check_cross_fields(self) -> "RunConfig":
        if self.disperse.strategy == "field" and not self.disperse.field:
            raise ValueError("disperse.field is required when disperse.strategy is 'field'")
        w = self.merge.weights
        if w is not None and len(w) != self.disperse.num_portions:
            raise ValueError(
                f"merge.weights has {len(w)} entries but disperse.num_portions is "
                f"{self.disperse.num_portions}: give one weight per sub-model"
            )
        labels = [e.variant for e in self.recipes or []]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"recipes: label(s) {', '.join(dupes)} used twice; give each "
                             "entry of the same recipe its own `label`")
        taken = [x for x in labels if x in ("base", "submodels", "interpolation")
                 or x.startswith(("sub_", "interp_"))]
        if taken:
            raise ValueError(f"recipes: label(s) {', '.join(taken)} name the run's own variants "
                             "(base, sub_<k>, interp_<t>); choose another label")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.learning_rate=1e-4` -> (["train", "learning_rate"], 1e-4) (YAML-typed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. train.learning_rate=1e-4)")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the section at `loc` (for 'unknown key' messages)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return sorted(model.model_fields)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} configuration error(s):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(RunConfig, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            lines.append(f"  - unknown key '{key}'.{hint} Allowed here: {', '.join(allowed)}")
        elif e["type"] == "sft_passthrough":
            lines.append(f"  - {e['msg']}")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{key}'")
        elif not loc:  # a cross-field check: its message says it all (input is the whole file)
            lines.append(f"  - {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  - '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply `key=value` overrides, validate."""
    data = read_yaml_mapping(path)
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, str(path))
