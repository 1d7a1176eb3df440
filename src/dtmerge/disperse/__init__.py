"""Stage 2: split the normalised data into K portions (random, k-means, or by a column)."""

from dtmerge.disperse.base import DisperseStrategy, instruction_text, response_text, text_for
from dtmerge.disperse.registry import STRATEGIES
from dtmerge.disperse.stage import assign_portions, disperse_stage

__all__ = [
    "DisperseStrategy", "STRATEGIES", "assign_portions", "disperse_stage", "instruction_text",
    "response_text", "text_for",
]
