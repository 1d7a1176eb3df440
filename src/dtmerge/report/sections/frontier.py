"""The report's frontier section, from frontier/frontier.json (written by `dtm frontier`).

Every candidate on validation items (where the decision reads them), with whether it beat
the train-less line on every moving plane. What to ship, and its numbers on TEST items, are
the Answer's: the frontier makes the same decision (`dtmerge.decision`), so they agree.
"""

from __future__ import annotations

from pathlib import Path

from dtmerge.report import plots
from dtmerge.results.analysis import TradeoffPoint
from dtmerge.report.context import Part, ReportContext
from dtmerge.report.document import Image, Paragraph, Section, Table
from dtmerge.results.records import ReportError, load_eval_file
from dtmerge.rundir import read_state_json, rerun_hint

TITLE = "Frontier: merged candidates chosen on validation, confirmed on test"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def frontier_section(root: Path) -> list[Section]:
    """The section (as a one-element list; empty when the run has no frontier/frontier.json):
    every candidate on validation items, and what the decision made of them. The choice's
    numbers on test items are in the Answer, which makes the same decision."""
    path = Path(root) / "frontier" / "frontier.json"
    if not path.is_file():
        return []
    try:
        summary = read_state_json(path, rerun_hint(f"dtm frontier {root}"))
        chosen = summary["chosen"]
    except (KeyError, TypeError):
        raise ReportError(f"{path}: damaged (not the file `dtm frontier` writes); rerun "
                          f"`dtm frontier {root}` to rewrite it") from None
    if "decision" not in summary:
        return [Section(TITLE, [Paragraph(
            f"{path} was written by an older dtmerge that chose on the accuracy plane alone; "
            f"rerun `dtm frontier {root}` (finished candidates are not scored again).")])]
    qualified = [c["name"] for c in summary["candidates"] if c.get("qualified")]
    pruned = sum(not c["validation"] for c in summary["candidates"])
    first = (f" A first pass on a subsample of them left out {pruned} (why: below); the rest "
             "were scored on all of them." if pruned else "")
    blocks: list = [Paragraph(
        f"`dtm frontier` scored {len(summary['candidates'])} merged candidates of the sub-models "
        f"on VALIDATION items ({summary['split']['validation_fraction']:g} of each task's items) "
        f"in {summary['seconds']:.0f} s.{first} {len(qualified)} beat the train-less line on "
        f"every moving plane at the target ({', '.join(qualified) or 'none'}). The decision "
        f"over them and every other scored variant: {chosen['why']} Its numbers on test items "
        "are in the Answer.")]
    blocks += _plane(summary, _validation_losses(Path(root), summary))
    return [Section(TITLE, blocks)]


def _validation_losses(root: Path, summary: dict) -> dict[str, dict[str, float]]:
    """Candidate -> language-modelling task -> its loss on the validation documents, read
    from the candidates' validation results (empty when no loss task was scored)."""
    out = {}
    for c in summary["candidates"]:
        path = root / "frontier" / "eval" / f"{c['name']}.validation.json"
        if c["validation"] and path.is_file():
            result = load_eval_file(path, c["name"])
            out[c["name"]] = {t: r.score for t, r in result.tasks.items()
                              if not r.higher_is_better and r.parts}
    return out


def _plane(summary: dict, losses: dict[str, dict[str, float]]) -> list:
    """Every candidate (and the reference variants) on validation items: table and plot."""
    def point(name: str, p: dict) -> TradeoffPoint:
        return TradeoffPoint(name, p["instruction"], p["knowledge"], p.get("knowledge_se", 0.0))

    cands = [c for c in summary["candidates"] if c["validation"]]
    refs = {n: point(n, p) for n, p in summary["reference_validation"].items() if p}
    line = [refs[n] for n in summary["line_validation"] if n in refs]
    loss_tasks = sorted({t for v in losses.values() for t in v})
    rows = [[c["name"], c["method"], f"{c['scale']:g}", ",".join(map(str, c["subset"])),
             _fmt(c["validation"]["instruction"]), _fmt(c["validation"]["knowledge"]),
             *[f"{losses[c['name']][t]:.4f}" if t in losses.get(c["name"], {}) else "-"
               for t in loss_tasks],
             "yes" if c["pareto"] else "", "yes" if c.get("qualified") else "",
             "◀" if c["name"] == summary["chosen"]["name"] else ""]
            for c in cands]
    pruned = [c for c in summary["candidates"] if not c["validation"]]
    blocks: list = [] if not cands else [Table(["candidate", "method", "λ", "sub-models", "instruction (val)",
                           "knowledge (val)", *[f"{t} (val, lower is better)" for t in loss_tasks],
                           "Pareto (with base, SFT, line)", "beats the line", "chosen"], rows,
                          "Candidates on validation items")]
    if pruned and all(c.get("first_pass") for c in pruned):
        blocks.append(Table(["candidate", "method", "λ", "instruction (subsample)",
                             "knowledge (subsample)", "first pass"],
                            [[c["name"], c["method"], f"{c['scale']:g}",
                              _fmt((c["prune"] or {}).get("instruction")),
                              _fmt((c["prune"] or {}).get("knowledge")),
                              c["first_pass"].removeprefix("left out: ")] for c in pruned],
                            "Left out by the first pass (the decision's tests on a subsample of "
                            "validation items)"))
    elif pruned:  # a frontier.json written before the first pass gave reasons
        blocks.append(Paragraph(f"Dropped by the first pass (a subsample of validation items): "
                                f"{', '.join(c['name'] for c in pruned)}."))
    chart = plots.tradeoff_chart(list(refs.values()) + [point(c["name"], c["validation"])
                                                         for c in cands], line)
    if chart:
        blocks.append(Image("frontier.png", chart, "frontier candidates (validation items)"))
    return blocks


def frontier_part(ctx: ReportContext) -> Part:
    """`frontier_section` as one of the report's section builders."""
    return Part(tuple(frontier_section(ctx.run.root)))
