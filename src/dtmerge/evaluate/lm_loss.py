"""Language-modelling loss metrics (lm-eval's `loglikelihood_rolling` tasks, e.g. wikitext).

lm-eval reports word_perplexity, byte_perplexity and bits_per_byte for such tasks, all lower
is better, and each aggregates over documents as a *ratio of sums*: total negative
log-likelihood over total words or bytes, then transformed. A mean of per-document values
would weight a short document like a long one and give a different number, so dtmerge keeps
each document's log-likelihood and word/byte counts and recomputes the metric (and its
bootstrap intervals) from the sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

# Metrics lm-eval marks lower-is-better that dtmerge knows how to aggregate from parts.
LOWER_IS_BETTER = frozenset({"bits_per_byte", "byte_perplexity", "word_perplexity", "perplexity"})
LABELS = {"bits_per_byte": "bits per byte", "byte_perplexity": "byte perplexity",
          "word_perplexity": "word perplexity", "perplexity": "perplexity"}


@dataclass(frozen=True)
class RatioMetric:
    """metric = transform(sum(numerator) / sum(denominator)) over documents."""

    name: str
    unit: str  # "bytes" or "words": which per-item count is the denominator
    scale: float  # numerator = -loglikelihood * scale
    transform: Callable  # elementwise on floats and numpy arrays


RATIO_METRICS: dict[str, RatioMetric] = {
    "bits_per_byte": RatioMetric("bits_per_byte", "bytes", 1 / math.log(2), lambda r: r),
    "byte_perplexity": RatioMetric("byte_perplexity", "bytes", 1.0, np.exp),
    "word_perplexity": RatioMetric("word_perplexity", "words", 1.0, np.exp),
}


def metric_label(metric: str, higher_is_better: bool = True) -> str:
    """Human name with the direction, e.g. 'bits per byte (lower is better)'."""
    name = LABELS.get(metric, metric)
    return name if higher_is_better else f"{name} (lower is better)"


def is_higher_better(raw: dict, task: str, metric: str) -> bool:
    """The direction lm-eval records for a task's metric, else dtmerge's list of known ones."""
    recorded = (raw.get("higher_is_better") or {}).get(task) or {}
    value = recorded.get(metric)
    if isinstance(value, bool):
        return value
    return metric not in LOWER_IS_BETTER


def rolling_item(sample: dict) -> dict | None:
    """Per-document parts of a loglikelihood_rolling sample: its log-likelihood and its word
    and byte counts (as lm-eval counted them); None when the sample is not one."""
    counts: dict[str, int] = {}
    loglikelihood = None
    for metric, unit in (("bits_per_byte", "bytes"), ("byte_perplexity", "bytes"),
                         ("word_perplexity", "words")):
        value = sample.get(metric)
        if isinstance(value, (list, tuple)) and len(value) == 2 and \
                all(isinstance(v, (int, float)) for v in value):
            loglikelihood = float(value[0])
            counts[unit] = int(value[1])
    if loglikelihood is None:
        return None
    return {"loglikelihood": loglikelihood, **counts}


def item_parts(item: Mapping, metric: str) -> tuple[float, float] | None:
    """(numerator, denominator) of one document for `metric`, or None if it lacks them."""
    spec = RATIO_METRICS.get(metric)
    if spec is None or not isinstance(item.get("loglikelihood"), (int, float)):
        return None
    count = item.get(spec.unit)
    if not isinstance(count, (int, float)) or count <= 0:
        return None
    return -float(item["loglikelihood"]) * spec.scale, float(count)


def ratio_value(metric: str, numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The metric over a set of documents: transform(sum numerators / sum denominators)."""
    return float(RATIO_METRICS[metric].transform(sum(numerators) / sum(denominators)))
