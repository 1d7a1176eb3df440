"""Real English prose found on this machine: the forgetting probe of the Gemma run.

The Python standard library's docstrings are real, human-written technical English present
on every machine that runs dtmerge. Sentences from them become continuation items: the
first half of a sentence, its true second half, and the second halves of three other
sentences. A language model that keeps its pre-training knowledge prefers the true ending;
instruction tuning that damages general language modelling lowers the score. The text is
read at build time and never stored in the repository.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import warnings

MODULES = ["json", "csv", "argparse", "textwrap", "collections", "random", "statistics",
           "fractions", "decimal", "calendar", "datetime", "shutil", "zipfile", "tarfile",
           "logging", "heapq", "bisect", "difflib", "string", "fnmatch", "glob", "gzip", "pprint",
           "pathlib", "subprocess", "threading", "queue", "tempfile", "urllib.parse", "functools",
           "itertools", "operator", "contextlib", "dataclasses", "enum", "typing", "unittest"]
_WORD = re.compile(r"^[A-Za-z][A-Za-z,;'()-]*$")


def module_docstrings(module, own_only: bool = False) -> list[str]:
    """The module's docstring, then those of its public functions and classes (by name);
    with `own_only`, only those defined in the module itself (not re-exported)."""
    docs = [inspect.getdoc(module) or ""]
    for attr in sorted(dir(module)):
        obj = getattr(module, attr, None) if not attr.startswith("_") else None
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if own_only and getattr(obj, "__module__", None) != module.__name__:
            continue
        with warnings.catch_warnings():
            # typing.io / typing.re (Python < 3.12) warn on any attribute read, their docstring
            # too: reading it is not a use, and the warning ended every cold `make demo`.
            warnings.simplefilter("ignore", DeprecationWarning)
            docs.append(inspect.getdoc(obj) or "")
    return docs


def docstring_sentences(modules: list[str] = MODULES) -> list[str]:
    """Prose sentences (8-30 plain words, no code) from the docstrings of `modules`."""
    seen, out = set(), []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for doc in module_docstrings(module):
            for para in doc.split("\n\n"):
                text = " ".join(para.split())
                for sent in re.split(r"(?<=[.!?])\s+", text):
                    words = sent.rstrip(".").split()
                    if 8 <= len(words) <= 30 and sent.endswith(".") and \
                            all(_WORD.match(w) for w in words) and sent not in seen:
                        seen.add(sent)
                        out.append(sent)
    return out


def continuation_items(n: int = 100, seed: int = 0) -> list[dict]:
    """Up to `n` items {context, choices, answer}: a true sentence ending vs three foreign ones."""
    sentences = docstring_sentences()
    rng = random.Random(seed)
    rng.shuffle(sentences)
    sentences = sentences[:n]
    if len(sentences) < 4:
        raise ValueError(f"only {len(sentences)} docstring sentences found; need at least 4")
    halves = []
    for s in sentences:
        words = s.split()
        cut = len(words) // 2
        halves.append((" ".join(words[:cut]), " " + " ".join(words[cut:])))
    items = []
    for i, (context, ending) in enumerate(halves):
        others = sorted({h[1] for h in halves} - {ending})
        choices = [ending, *rng.sample(others, 3)]
        rng.shuffle(choices)
        items.append({"context": context, "choices": choices, "answer": choices.index(ending)})
    return items
