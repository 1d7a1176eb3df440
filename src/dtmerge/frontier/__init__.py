"""`dtm frontier`: merged candidates of a run's sub-models, chosen on validation items.

Public API:
    frontier_stage(cfg, run) -> dict      grid, first pass, validation pass, choice, test pass
    export_candidate(cfg, run, name, out=None, overwrite=False) -> Path
    build_grid(cfg, num_models) -> list[Candidate]
"""

from dtmerge.frontier.export import export_candidate
from dtmerge.frontier.grid import Candidate, build_grid
from dtmerge.frontier.stage import frontier_stage

__all__ = ["Candidate", "build_grid", "export_candidate", "frontier_stage"]
