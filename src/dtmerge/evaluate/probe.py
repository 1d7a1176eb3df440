"""A cheap, fixed knowledge probe: multiple-choice items sampled from lm-eval tasks.

Docs are loaded through lm-eval's task definitions once (so templates match the benchmark),
turned into token ids once, and then scored in-process by the summed log-likelihood of each
choice, as lm-eval scores multiple choice. One probe costs a few forward passes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from dtmerge.errors import ConfigError

if TYPE_CHECKING:
    from dtmerge.evaluate.split import ItemSplit


@dataclass
class ProbeSet:
    """Tokenised multiple-choice items: one context, several continuations, a gold index."""

    contexts: list[list[int]]
    choices: list[list[list[int]]]
    gold: list[int]
    pad_id: int = 0
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.gold)

    def predictions(self, model, batch_size: int = 32) -> list[int]:
        """Index of the most likely choice for every item."""
        from dtmerge.evaluate.scoring import choice_scores

        ctx, cont, owner = [], [], []
        for i, (c, opts) in enumerate(zip(self.contexts, self.choices)):
            for o in opts:
                ctx.append(c)
                cont.append(o)
                owner.append(i)
        scores = choice_scores(model, ctx, cont, self.pad_id, batch_size)
        best: dict[int, tuple[float, int]] = {}
        pos = [0] * len(self.gold)
        for i, s in zip(owner, scores):
            j = pos[i]
            pos[i] += 1
            if i not in best or s > best[i][0]:
                best[i] = (s, j)
        return [best[i][1] for i in range(len(self.gold))]

    def correct(self, model, batch_size: int = 32) -> list[int]:
        """1 where the most likely choice is the gold one, per item (paired comparisons of
        two steps need the items, not only the mean)."""
        return [int(p == g) for p, g in zip(self.predictions(model, batch_size), self.gold)]

    def accuracy(self, model, batch_size: int = 32) -> float:
        return sum(self.correct(model, batch_size)) / max(len(self.gold), 1)


def build_probe_from_items(items: Iterable[tuple[str, list[str], int]], tokenizer,
                           delimiter: str = " ", sources: list[str] | None = None,
                           max_context_tokens: int = 384) -> ProbeSet:
    """Tokenise (context, choices, gold index) triples once."""
    contexts, choices, gold = [], [], []
    for ctx, opts, g in items:
        c_ids = tokenizer(ctx, add_special_tokens=False)["input_ids"][-max_context_tokens:]
        if tokenizer.bos_token_id is not None:
            c_ids = [tokenizer.bos_token_id] + c_ids
        contexts.append(c_ids)
        choices.append([tokenizer(delimiter + o, add_special_tokens=False)["input_ids"]
                        for o in opts])
        gold.append(int(g))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return ProbeSet(contexts, choices, gold, pad, sources or [])


def sample_task_items(tasks: list[str], include_path: list[str | Path], size: int,
                      seed: int = 0, split: "ItemSplit | None" = None,
                      eval_tasks: Iterable[str] = (),
                      ) -> tuple[list[tuple[str, list[str], int]], list[str], str]:
    """Sample up to `size` multiple-choice items, spread evenly over `tasks`.

    With an item `split` (eval.validation_fraction), only validation items are drawn: a
    `_best` checkpoint chosen on the probe is then never chosen on the items the report
    presents as test results. An item's part is decided as the evaluation decides it, under
    the `eval.tasks` entry that scores it (`eval_tasks`; see `split_keys`).

    Returns:
        (items, source task per item, target delimiter).

    Raises:
        ConfigError: A task is unknown or is not multiple choice.
    """
    from dtmerge.evaluate.groups import resolve_tasks, task_manager_for

    names = resolve_tasks(tasks, include_path)
    manager = task_manager_for(names, include_path)
    loaded = manager.load(names)["tasks"]
    keys = split_keys(eval_tasks, manager) if split is not None else {}
    rng = random.Random(seed)
    per_task: dict[str, list] = {}
    delimiter = " "
    for name, task in sorted(loaded.items()):
        if task.get_config("output_type") != "multiple_choice":
            raise ConfigError(f"monitor.probe_tasks: '{name}' is not a multiple-choice task; "
                              "the probe needs multiple-choice knowledge tasks")
        # lm-eval's doc_id is the index in these docs (test docs when the task has them)
        docs = list(task.test_docs() if task.has_test_docs() else task.validation_docs())
        if split is not None:
            owner, prefixed = keys.get(name, (name, False))
            docs = [d for i, d in enumerate(docs)
                    if split.part(owner, f"{name}:{i}" if prefixed else i) == "validation"]
        rng.shuffle(docs)
        per_task[name] = [(task, d) for d in docs]
        delimiter = task.get_config("target_delimiter") or " "
    items, sources = [], []
    # round-robin so every task is represented even when `size` is small
    while len(items) < size and any(per_task.values()):
        for name in list(per_task):
            if per_task[name] and len(items) < size:
                task, doc = per_task[name].pop()
                triple = _doc_triple(task, doc)
                if triple is not None:
                    items.append(triple)
                    sources.append(name)
    if not items:
        where = " among the validation items (raise eval.validation_fraction)" if split else ""
        raise ConfigError(f"monitor.probe_tasks {tasks}: no usable multiple-choice items{where}")
    return items, sources, delimiter


def split_keys(eval_tasks: Iterable[str], manager) -> dict[str, tuple[str, bool]]:
    """leaf task -> (the `eval.tasks` entry that scores it, whether its doc ids carry the
    `leaf:` prefix), as the harness records items: a group's members are `leaf:index` under
    the group's name, a plain task's are bare indices under its own name. Leaves no
    evaluated task scores are absent (keyed under their own name by the caller)."""
    keys: dict[str, tuple[str, bool]] = {}
    for name in eval_tasks:
        leaves = _leaves(manager, name, set())
        for leaf in leaves:
            keys.setdefault(leaf, (name, leaves != [name]))
    return keys


def _leaves(manager, name: str, seen: set) -> list[str]:
    """The leaf tasks of a task, group or tag, from lm-eval's task index (no data loaded)."""
    if name in seen:
        return []
    seen.add(name)
    entry = manager.task_index.get(name)
    kind = entry.kind.name if entry is not None else "TASK"
    if kind == "TAG":
        children = sorted(entry.tags)
    elif kind == "GROUP":
        listed = (entry.cfg or {}).get("task") or []
        listed = listed if isinstance(listed, list) else [listed]
        children = [c if isinstance(c, str) else (c.get("task") or c.get("group"))
                    for c in listed]
    else:
        return [name]
    return [leaf for c in children if isinstance(c, str) for leaf in _leaves(manager, c, seen)]


def _doc_triple(task, doc) -> tuple[str, list[str], int] | None:
    ctx = task.doc_to_text(doc)
    choices = task.doc_to_choice(doc)
    gold = task.doc_to_target(doc)
    if isinstance(gold, list):
        gold = gold[0] if gold else None
    if isinstance(gold, str):
        gold = choices.index(gold) if gold in choices else (int(gold) if gold.isdigit() else None)
    if not isinstance(gold, int) or not 0 <= gold < len(choices) or not isinstance(ctx, str):
        return None
    return ctx, [str(c) for c in choices], gold


def build_probe(tasks: list[str], include_path: list[str | Path], tokenizer, size: int = 100,
                seed: int = 0, split: "ItemSplit | None" = None,
                eval_tasks: Iterable[str] = ()) -> ProbeSet:
    """Sample and tokenise a probe set from lm-eval multiple-choice tasks (local or named);
    with a `split`, from validation items only (see `sample_task_items`)."""
    items, sources, delimiter = sample_task_items(tasks, include_path, size, seed, split,
                                                  eval_tasks)
    return build_probe_from_items(items, tokenizer, delimiter, sources)
