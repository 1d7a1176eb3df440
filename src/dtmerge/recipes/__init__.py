"""Recipes: the ways to instruction-tune a model that one run trains and scores side by side
(sft, dtm, wise_ft, uniform_soup, l2, ewc, replay, curated, ensemble, lora_moe).

Each recipe is one module behind `Recipe` (base.py) with one entry in `registry.py`; the
pipeline's train and merge stages run them (`stages.py`).
"""

from dtmerge.recipes.base import Recipe, RecipeParams
from dtmerge.recipes.registry import RECIPES
from dtmerge.recipes.resolve import resolve_recipes

__all__ = ["RECIPES", "Recipe", "RecipeParams", "resolve_recipes"]
