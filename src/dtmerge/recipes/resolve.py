"""Turning a run's `recipes:` entries into recipes with validated parameters.

It sits above the recipe modules (through the registry), apart from `base.py`, which every
recipe imports: the registry names recipes that import `base`, so `base` must not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from dtmerge.errors import ConfigError
from dtmerge.recipes.base import Recipe, RecipeParams, default_entries
from dtmerge.recipes.registry import RECIPES

if TYPE_CHECKING:
    from dtmerge.config import RunConfig


def resolve_recipes(cfg: "RunConfig") -> list[Recipe]:
    """The run's recipes with validated parameters.

    Raises:
        ConfigError: an unknown recipe (with close matches) or a bad parameter, naming the
            entry, the recipe and its allowed keys.
    """
    entries = cfg.recipes if cfg.recipes is not None else default_entries(cfg)
    out = []
    for i, entry in enumerate(entries):
        cls = RECIPES.get(entry.name)
        try:
            params = cls.Params.model_validate(entry.params)
        except ValidationError as err:
            raise ConfigError(_params_message(i, entry.name, cls.Params, err)) from None
        recipe = cls(cfg, entry.variant, params)
        recipe.check()
        out.append(recipe)
    return out


def _params_message(i: int, name: str, params: type[RecipeParams], err: ValidationError) -> str:
    allowed = ", ".join(sorted(params.model_fields)) or "none"
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown parameter '{key}'")
        elif e["type"] == "missing":
            problems.append(f"missing parameter '{key}'")
        else:
            problems.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return (f"recipes[{i}] ({name}): {'; '.join(problems)}. Parameters of {name}: "
            f"{allowed} (plus name, label)")
