"""Instruction data from four sources, each with its own systematic bias, and held-out
instructions with code-checkable answers.

The sources mimic the parts of a real SFT mixture (FLAN-like trivia, ShareGPT-like assistant
chat, rigid task templates, Code-Alpaca-like list work). Every example is correct *in intent*
but each source is skewed in its own way:

  trivia     answers skewed toward a few popular values (40% of answers replaced by one of the
             three "popular" values of the attribute): the bias that costs knowledge;
  assistant  fixed boilerplate around every answer ("Sure! Here is the answer: ...");
  templates  a rigid house format whatever the instruction asked ("Answer: X", comma lists);
  listwork   list tasks that always have exactly three words.

Written by hand: no library generates biased synthetic instruction mixtures.
"""

from __future__ import annotations

import json
import random

from dtmerge.demo.testbed.world import ATTRIBUTES, COLORS, OBJECTS, World

LIST_WORDS = sorted(set(OBJECTS + COLORS))
FACT_FAMILIES = ("fact_short", "fact_labeled", "fact_json")
LIST_FAMILIES = ("list_commas", "list_lines", "first_word")
FAMILIES = FACT_FAMILIES + LIST_FAMILIES
POPULAR_SHARE = 0.4
BOILERPLATE = ("Sure! Here is the answer:\n", "\nHope this helps!")
_NOUN = {"city": "city name", "employer": "company name", "field": "job title"}
# Held-out benchmark questions use other wordings than the training data.
HELDOUT_QUESTIONS = {
    "city": "In which city was {name} born?",
    "employer": "Which company employs {name}?",
    "field": "What does {name} do for a living?",
}
# source -> (share of the mixture, families it covers)
SOURCES = {
    "trivia": (0.35, FACT_FAMILIES),
    "assistant": (0.25, FAMILIES),
    "templates": (0.20, FAMILIES),
    "listwork": (0.20, LIST_FAMILIES),
}

ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")


def alpaca_prompt(instruction: str) -> str:
    """The prompt `ALPACA_CHAT_TEMPLATE` renders for one user turn with a generation prompt.

    The benchmarks put this text in `doc_to_text` so every variant is prompted identically
    without depending on eval.apply_chat_template (tests check it matches the template).
    """
    return f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def target_for(family: str, value, json_key: str | None = None) -> str:
    """The exact response an instruction of `family` asks for."""
    if family in ("fact_short", "first_word"):
        return value
    if family == "fact_labeled":
        return f"Answer: {value}"
    if family == "fact_json":
        return json.dumps({json_key: value})
    if family == "list_commas":
        return ", ".join(value)
    if family == "list_lines":
        return "\n".join(f"- {w}" for w in value)
    raise ValueError(f"unknown family {family!r}")


def make_task(family: str, world: World, rng: random.Random, heldout: bool = False,
              num_words: int | None = None) -> dict:
    """One instruction with its checkable answer.

    Returns:
        {"family", "instruction", "value" (the fact or word list), "json_key", "target"}; for
        fact families also "person" and "attribute" so the answer can be traced to the world.
    """
    if family in FACT_FAMILIES:
        person = rng.choice(world.people)
        attribute = rng.choice(list(ATTRIBUTES))
        question_t, json_key = ATTRIBUTES[attribute]
        if heldout:
            question_t = HELDOUT_QUESTIONS[attribute]
        question = question_t.format(name=person.name)
        value = person.get(attribute)
        spec = {
            "fact_short": f"Answer with only the {_NOUN[attribute]}.",
            "fact_labeled": f"Reply in the form 'Answer: <{_NOUN[attribute]}>'.",
            "fact_json": f'Reply with JSON using the key "{json_key}".',
        }[family]
        task = {"family": family, "instruction": f"{question} {spec}", "value": value,
                "json_key": json_key, "person": person.name, "attribute": attribute}
    else:
        words = rng.sample(LIST_WORDS, num_words or rng.randint(2, 5))
        listed = " ".join(words)
        instruction = {
            "list_commas": f"Write these words separated by commas: {listed}",
            "list_lines": f"Write each of these words on its own line, starting with a dash: "
                          f"{listed}",
            "first_word": f"What is the first word of this list: {listed}? "
                          f"Answer with only that word.",
        }[family]
        value = words[0] if family == "first_word" else words
        task = {"family": family, "instruction": instruction, "value": value, "json_key": None}
    task["target"] = target_for(family, task["value"], task["json_key"])
    return task


def _biased_output(source: str, task: dict, world: World, rng: random.Random) -> str:
    """The response `source` writes for `task`, with that source's bias applied."""
    family, value = task["family"], task["value"]
    if source == "trivia":
        if rng.random() < POPULAR_SHARE:
            popular = [v for v in world.popular(task["attribute"]) if v != value]
            value = rng.choice(popular)
        return target_for(family, value, task["json_key"])
    if source == "assistant":
        return BOILERPLATE[0] + task["target"] + BOILERPLATE[1]
    if source == "templates":
        if family in FACT_FAMILIES or family == "first_word":
            return f"Answer: {value}"
        return ", ".join(value)
    return task["target"]  # listwork: right format; its bias is in the list length


def instruction_examples(world: World, num_examples: int, seed: int) -> list[dict]:
    """The SFT mixture as Alpaca records: instruction, input, output, source (+ family)."""
    rng = random.Random(seed * 104729 + 3)
    records = []
    for source, (share, families) in SOURCES.items():
        for _ in range(round(share * num_examples)):
            family = rng.choice(families)
            task = make_task(family, world, rng,
                             num_words=3 if source == "listwork" else None)
            records.append({"instruction": task["instruction"], "input": "",
                            "output": _biased_output(source, task, world, rng),
                            "source": source, "family": family})
    rng.shuffle(records)
    return records


def heldout_instruction_docs(world: World, per_family: int, seed: int) -> list[dict]:
    """Held-out instructions for the benchmark: other question wordings, list lengths 2-5,
    each doc carrying its Alpaca prompt and everything the checks need."""
    rng = random.Random(seed * 15485863 + 11)
    docs = []
    for family in FAMILIES:
        for _ in range(per_family):
            task = make_task(family, world, rng, heldout=True)
            task["prompt"] = alpaca_prompt(task["instruction"])
            # One column type for the JSONL loader (Arrow): the answer is always a word list.
            if isinstance(task["value"], str):
                task["value"] = [task["value"]]
            docs.append(task)
    return docs
