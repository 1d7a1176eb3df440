"""What to ship: one decision, made on validation items, confirmed on test items.

Public API:
    decide_run(run, answer_cfg, ...) -> RunDecision | None   the decision of a run directory
    confirm(run, run_decision, ...) -> Confirmation          the choice on test items
    decide(draws, candidates, line, planes, settings) -> Decision   the rule itself
    draw(replicates, instruction, planes, ...) -> Draws      paired bootstrap draws
"""

from dtmerge.decision.confirm import Confirmation, confirm
from dtmerge.decision.draws import Draws, Plane, draw
from dtmerge.decision.inputs import RunDecision, decide_run
from dtmerge.decision.rule import Decision, Settings, decide

__all__ = ["Confirmation", "Decision", "Draws", "Plane", "RunDecision", "Settings", "confirm",
           "decide", "decide_run", "draw"]
