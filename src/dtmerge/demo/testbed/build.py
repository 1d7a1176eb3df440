"""Build (or reuse) one testbed: world, tokenizer, base model, instruction data, benchmarks.

A build lives in `<cache>/<version>-<size>-seed<seed>/` and is renamed into place only when
complete, so an interrupted build is never reused. The cache is `~/.cache/dtmerge/testbed`
unless `cache_dir` or $DTMERGE_CACHE_DIR (then <it>/testbed) says otherwise.
"""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dtmerge.errors import ConfigError
from dtmerge.rundir import atomic_dir, atomic_write_json
from dtmerge.demo.testbed import benchmarks
from dtmerge.demo.testbed.instructions import alpaca_prompt, instruction_examples
from dtmerge.demo.testbed.pretrain import ModelSize, pretrain, train_tokenizer
from dtmerge.demo.testbed.world import make_world, pretraining_documents

# Bump when generated content changes, so stale caches are not reused.
GENERATOR_VERSION = "v6"


@dataclass(frozen=True)
class SizePreset:
    """World, corpus, model and benchmark sizes of one testbed size."""

    people: int
    cities: int
    employers: int
    passes: int  # shuffled passes over the fact sentences in the pretraining corpus
    premises: int  # premise-conclusion examples in the pretraining corpus (reasoning)
    model: ModelSize
    instructions: int
    reasoning_items: int
    instruct_per_family: int
    general_passes: int = 0  # passes over general English text (stdlib docstrings)


SIZES = {
    # For tests: builds in seconds; the model learns little.
    "tiny": SizePreset(16, 6, 5, 8, 60, ModelSize(32, 2, 2, 400, 30, 16, 64, 5e-3),
                       240, 16, 3),
    # The demo: base knowledge >= 0.9 and the reasoning probe far above chance within a
    # few-minute pretraining budget. 128-token blocks hold whole documents; 1000 steps
    # because the premise skill appears abruptly (measured at 800 steps: 1.0 on one seed,
    # 0.5 on another).
    # 50 held-out instructions per family (300, half for validation): with 20 (60 for
    # validation) a 0.05 margin on instruction following could not be shown for any model.
    "small": SizePreset(120, 16, 12, 40, 3000,
                        ModelSize(128, 3, 4, 1000, 1000, 16, 128, 3e-3, init_std=0.1),
                        2000, 200, 50, general_passes=2),
}


@dataclass
class Testbed:
    """Paths and task names of one built testbed."""

    base_model: Path
    data: Path
    tasks_dir: Path
    knowledge_tasks: list[str] = field(default_factory=lambda: [benchmarks.KNOWLEDGE_TASK])
    reasoning_tasks: list[str] = field(default_factory=lambda: [benchmarks.REASONING_TASK])
    instruction_tasks: list[str] = field(default_factory=lambda: [benchmarks.INSTRUCT_TASK])
    root: Path | None = None
    info: dict = field(default_factory=dict)


def default_cache_dir() -> Path:
    from dtmerge.models.gguf import cache_root

    return cache_root() / "testbed"


def _testbed_at(root: Path) -> Testbed:
    info = json.loads((root / "build.json").read_text())
    return Testbed(base_model=root / "base_model", data=root / "data" / "instructions.jsonl",
                   tasks_dir=root / "tasks", root=root, info=info)


def generate_files(seed: int, size: str, root: Path, final_root: Path) -> dict:
    """Everything except the model: world.json, pretraining corpus, data, task dirs.

    Deterministic in (seed, size); returns a summary for build.json.
    """
    preset = SIZES[size]
    world = make_world(seed, preset.people, preset.cities, preset.employers)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "world.json").write_text(json.dumps(world.to_dict(), indent=1))
    docs = pretraining_documents(world, seed, preset.passes, preset.premises,
                                 preset.general_passes)
    (root / "data" / "pretrain.txt").write_text("\n\n".join(docs))
    records = instruction_examples(world, preset.instructions, seed)
    (root / "data" / "instructions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    counts = benchmarks.write_task_dirs(world, seed, root / "tasks", final_root / "tasks",
                                        preset.reasoning_items, preset.instruct_per_family)
    return {"world": world, "docs": docs, "instructions": len(records), "benchmark_items": counts,
            "instruction_texts": [alpaca_prompt(r["instruction"]) + r["output"] for r in records]}


def build_testbed(seed: int = 0, size: str = "small", cache_dir: str | Path | None = None,
                  log=print) -> Testbed:
    """Build the testbed for (seed, size), or reuse the cached build.

    Args:
        seed: world, data and training seed.
        size: "small" (the demo) or "tiny" (tests).
        cache_dir: cache root (default: $DTMERGE_CACHE_DIR/testbed or ~/.cache/dtmerge/testbed).
        log: progress printer.

    Returns:
        The `Testbed` (base model dir, Alpaca JSONL data, lm-eval task dir, task names).

    Raises:
        ConfigError: unknown size.
    """
    if size not in SIZES:
        raise ConfigError(f"unknown testbed size {size!r}: choose one of {', '.join(SIZES)}")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = root / f"{GENERATOR_VERSION}-{size}-seed{seed}"
    if (final / "build.json").exists():
        log(f"testbed: reusing {final}")
        return _testbed_at(final)
    # Two demos started at once would share one staging directory and mix their files: the
    # second waits for the first (the kernel drops the lock if a builder dies) and reuses it.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "build.json").exists():
            log(f"testbed: reusing {final} (built by another process meanwhile)")
            return _testbed_at(final)
        return _build(seed, size, final, log)


def _build(seed: int, size: str, final: Path, log) -> Testbed:
    log(f"testbed: building {final} (seed {seed}, size {size})")
    start = time.perf_counter()
    with atomic_dir(final) as tmp:
        generated = generate_files(seed, size, tmp, final)
        preset = SIZES[size]
        # The tokenizer also sees the instruction data as the model will (Alpaca-rendered), as a
        # real tokenizer has seen such English: trained on the pretraining text alone it spelled
        # the Alpaca preamble out in 98 tokens instead of 30, and SFT cost 2.8x the tokens.
        tokenizer = train_tokenizer(generated["docs"] + generated["instruction_texts"],
                                    preset.model.vocab)
        stats = pretrain(tokenizer, generated["docs"], preset.model, seed, tmp / "base_model",
                         log=log)
        info = {"seed": seed, "size": size, "generator_version": GENERATOR_VERSION,
                "instructions": generated["instructions"],
                "benchmark_items": generated["benchmark_items"], **stats,
                "build_wall_s": round(time.perf_counter() - start, 1)}
        atomic_write_json(tmp / "build.json", info)
    log(f"testbed: built in {info['build_wall_s']} s (pretraining {stats['pretrain_wall_s']} s "
        f"wall, {stats['pretrain_cpu_s']} s CPU)")
    return _testbed_at(final)
