"""Split the normalised data into K portions (random, k-means, or by a column): a library the
dtm recipe calls."""

from dtmerge.disperse.base import DisperseStrategy, instruction_text, response_text, text_for
from dtmerge.disperse.registry import STRATEGIES
from dtmerge.disperse.stage import assign_portions, disperse_portions

__all__ = [
    "DisperseStrategy", "STRATEGIES", "assign_portions", "disperse_portions", "instruction_text",
    "response_text", "text_for",
]
