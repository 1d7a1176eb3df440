"""The report's bias section, rendered from eval/bias.json (written by `dtm eval`).

Known measures get their own tables (answer-position bias, boilerplate of generations, the
paper's token analysis); any other key is still shown, flattened, so the report keeps working
when the evaluator adds a measure.
"""

from __future__ import annotations

from typing import Any

from dtmerge.report.document import Paragraph, Section, Table
from dtmerge.report.results import variant_order
from dtmerge.evaluate.stats import format_p


def _f(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _shares(d: dict | None) -> str:
    return " ".join(f"{k}:{v:.2f}" for k, v in (d or {}).items()) or "-"


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _position_and_boilerplate(per_variant: dict) -> list:
    pos_rows, gen_rows, other_rows = [], [], []
    for variant in sorted(per_variant, key=variant_order):
        tasks = per_variant[variant]
        if not isinstance(tasks, dict):
            continue
        for task, measures in tasks.items():
            if not isinstance(measures, dict):
                other_rows.append([variant, task, _f(measures)])
                continue
            if isinstance(p := measures.get("position"), dict) and p.get("n"):
                pos_rows.append([variant, task, str(p["n"]), _shares(p.get("pred_share")),
                                 _shares(p.get("gold_share")),
                                 f"{p.get('most_picked', '-')} ({p.get('over_pick', 0):+.2f})",
                                 _f(p.get("tv_distance")), format_p(p.get("p_value"))])
            if isinstance(b := measures.get("boilerplate"), dict) and b.get("n"):
                gen_rows.append([variant, task, str(b["n"]), repr(b.get("top_opening", "")),
                                 _f(b.get("top_opening_share")), _f(b.get("distinct_opening_share")),
                                 _f(b.get("mean_words"), 1), _f(b.get("length_ratio"), 2)])
            for key, value in _flatten({k: v for k, v in measures.items()
                                        if k not in ("position", "boilerplate")}).items():
                other_rows.append([variant, f"{task}.{key}", _f(value)])
    blocks: list = []
    if pos_rows:
        blocks.append(Table(
            ["variant", "task", "items", "predicted share", "gold share", "most over-picked",
             "TV distance", "p (chi²)"], pos_rows,
            "Answer-position bias on multiple choice: predicted letters against gold"))
    if gen_rows:
        blocks.append(Table(
            ["variant", "task", "n", "top opening", "share", "distinct openings", "mean words",
             "length / reference"], gen_rows, "Boilerplate and length of generations"))
    if other_rows:
        blocks.append(Table(["variant", "measure", "value"], other_rows[:80], "Other measures"))
    return blocks


def _tokens(tokens: dict) -> list:
    models = tokens.get("models") if isinstance(tokens.get("models"), dict) else {}
    rows = []
    for name in sorted(models, key=variant_order):
        m = models[name]
        top = [t for t in m.get("top_tokens") or [] if isinstance(t, dict)][:8]
        shown = ", ".join(f"{t.get('token', '')!r}{'*' if t.get('rare') else ''}" for t in top)
        rows.append([name, _f(m.get("rare_share_of_top"), 2), _f(m.get("mean_drop_rare")),
                     _f(m.get("mean_drop_common")), shown or "-"])
    if not rows:
        return []
    return [
        Paragraph("Token analysis (the paper's): the tokens whose loss each model lowered most "
                  "against the base. Rare tokens (marked *; at most "
                  f"{tokens.get('rare_max_count', '?')} occurrences in the training data) "
                  "dominating the top means the model is fitting dataset-specific quirks."),
        Table(["model", "rare share of top", "mean drop (rare)", "mean drop (common)",
               "top tokens"], rows),
    ]


def bias_section(bias: dict) -> Section:
    """Section "Bias of the instruction data" from the contents of eval/bias.json."""
    blocks: list = [Paragraph(
        "Biases the paper blames for the alignment tax, measured per variant by `dtm eval` "
        "(eval/bias.json).")]
    per_variant = bias.get("variants")
    if isinstance(per_variant, dict):
        blocks += _position_and_boilerplate(per_variant)
    if isinstance(bias.get("tokens"), dict):
        blocks += _tokens(bias["tokens"])
    rest = {k: v for k, v in bias.items() if k not in ("variants", "tokens")}
    if rest:
        flat = _flatten(rest)
        blocks.append(Table(["measure", "value"], [[k, _f(v)] for k, v in list(flat.items())[:80]]))
    if len(blocks) == 1:
        blocks.append(Paragraph("bias.json holds no measure yet."))
    return Section("Bias of the instruction data", blocks)
