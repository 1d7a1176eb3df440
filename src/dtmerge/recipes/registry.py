"""The recipes, from one explicit list (each imported only when a run uses it)."""

from dtmerge.registry import Registry

RECIPES = Registry("recipe (recipes[].name)", {
    "sft": "dtmerge.recipes.sft:Sft",
    "dtm": "dtmerge.recipes.dtm:Dtm",
    "wise_ft": "dtmerge.recipes.wise_ft:WiseFt",
    "uniform_soup": "dtmerge.recipes.uniform_soup:UniformSoup",
    "l2": "dtmerge.recipes.l2:L2",
    "ewc": "dtmerge.recipes.ewc:Ewc",
    "replay": "dtmerge.recipes.replay:Replay",
    "curated": "dtmerge.recipes.curated:Curated",
    "ensemble": "dtmerge.recipes.ensemble:Ensemble",
    "lora_moe": "dtmerge.recipes.lora_moe:LoraMoe",
})
