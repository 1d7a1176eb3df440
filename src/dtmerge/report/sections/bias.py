"""The report's bias section, rendered from eval/bias.json (written by `dtm eval`).

Known measures get their own tables (answer-position bias, boilerplate of generations, the
paper's token analysis); any other key is still shown, flattened, so the report keeps working
when the evaluator adds a measure.
"""

from __future__ import annotations

from typing import Any

from dtmerge.report.document import Paragraph, Section, Table
from dtmerge.results.records import variant_order
from dtmerge.evaluate.stats import format_p


# Thresholds for calling a measure a bias (stated in the report next to each finding).
POSITION_TV = 0.10  # total-variation distance of predicted vs gold letter shares ...
POSITION_P = 0.05  # ... and a chi-squared p-value below this
OPENING_SHARE = 0.30  # one opening phrase in at least this share of generations
LENGTH_RATIO = (0.67, 1.5)  # mean length against the reference outside this range
RARE_SHARE = 0.5  # the paper's account: rare tokens make up most of the largest loss drops


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


def position_biased(p: dict) -> bool:
    tv, pv = p.get("tv_distance"), p.get("p_value")
    return (isinstance(tv, (int, float)) and tv >= POSITION_TV
            and isinstance(pv, (int, float)) and pv < POSITION_P)


def boilerplate_flags(b: dict) -> list[str]:
    why = []
    share, ratio = b.get("top_opening_share"), b.get("length_ratio")
    if isinstance(share, (int, float)) and share >= OPENING_SHARE and b.get("top_opening"):
        why.append(f"same opening {share:.0%}")
    if isinstance(ratio, (int, float)) and ratio > 0 and not LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1]:
        why.append(f"length {ratio:.2f}× reference")
    return why


def _finding(flagged: list[str], what: str, rule: str) -> str:
    if flagged:
        return f"Finding: {what} in {'; '.join(flagged)} (threshold: {rule})."
    return f"Finding: no variant shows {what} beyond the threshold ({rule})."


def _position_and_boilerplate(per_variant: dict) -> list:
    pos_rows, gen_rows, other_rows = [], [], []
    flagged_pos: list[str] = []
    flagged_gen: list[str] = []
    for variant in sorted(per_variant, key=variant_order):
        tasks = per_variant[variant]
        if not isinstance(tasks, dict):
            continue
        for task, measures in tasks.items():
            if not isinstance(measures, dict):
                other_rows.append([variant, task, _f(measures)])
                continue
            if isinstance(p := measures.get("position"), dict) and p.get("n"):
                flag = position_biased(p)
                pos_rows.append([variant, task, str(p["n"]), _shares(p.get("pred_share")),
                                 _shares(p.get("gold_share")),
                                 f"{p.get('most_picked', '-')} ({p.get('over_pick', 0):+.2f})",
                                 _f(p.get("tv_distance")), format_p(p.get("p_value")),
                                 "biased" if flag else "no"])
                if flag:
                    flagged_pos.append(f"{variant} on {task} (over-picks {p.get('most_picked')}, "
                                       f"TV {_f(p.get('tv_distance'), 2)})")
            if isinstance(b := measures.get("boilerplate"), dict) and b.get("n"):
                why = boilerplate_flags(b)
                gen_rows.append([variant, task, str(b["n"]), repr(b.get("top_opening", "")),
                                 _f(b.get("top_opening_share")), _f(b.get("distinct_opening_share")),
                                 _f(b.get("mean_words"), 1), _f(b.get("length_ratio"), 2),
                                 ", ".join(why) or "no"])
                if why:
                    flagged_gen.append(f"{variant} on {task} ({', '.join(why)})")
            for key, value in _flatten({k: v for k, v in measures.items()
                                        if k not in ("position", "boilerplate")}).items():
                other_rows.append([variant, f"{task}.{key}", _f(value)])
    blocks: list = []
    if pos_rows:
        blocks.append(Table(
            ["variant", "task", "items", "predicted share", "gold share", "most over-picked",
             "TV distance", "p (chi²)", "biased?"], pos_rows,
            "Answer-position bias on multiple choice: predicted letters against gold"))
        blocks.append(Paragraph(_finding(
            flagged_pos, "answer-position bias",
            f"TV distance ≥ {POSITION_TV:.2f} with p < {POSITION_P}")))
    if gen_rows:
        blocks.append(Table(
            ["variant", "task", "n", "top opening", "share", "distinct openings", "mean words",
             "length / reference", "flag"], gen_rows, "Boilerplate and length of generations"))
        blocks.append(Paragraph(_finding(
            flagged_gen, "boilerplate or length bias",
            f"one opening in ≥ {OPENING_SHARE:.0%} of generations, or mean length outside "
            f"{LENGTH_RATIO[0]}–{LENGTH_RATIO[1]}× the reference")))
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
        Paragraph(token_finding(models)),
    ]


def token_finding(models: dict) -> str:
    """Whether the token table supports the paper's account (rare tokens dominate the
    largest loss drops, and drop more than common ones) or contradicts it."""
    shares = {n: m.get("rare_share_of_top") for n, m in models.items()
              if isinstance(m.get("rare_share_of_top"), (int, float))}
    if not shares:
        return "Finding: no rare-token share recorded."
    against = [n for n, x in shares.items() if x < RARE_SHARE
               or (models[n].get("mean_drop_rare") or 0) < (models[n].get("mean_drop_common") or 0)]
    rule = (f"rare share of the top tokens ≥ {RARE_SHARE:.0%} and rare tokens dropping more "
            "than common ones")
    lo, hi = min(shares.values()), max(shares.values())
    if not against:
        return (f"Finding: consistent with the paper's rare-token account in every model "
                f"(rare share of top {lo:.2f}–{hi:.2f}; threshold: {rule}).")
    first = models[against[0]]
    common = [t.get("token", "") for t in first.get("top_tokens") or []
              if isinstance(t, dict) and not t.get("rare")][:3]
    return (f"Finding: these numbers contradict the paper's rare-token account for "
            f"{', '.join(against)} (rare share of top {lo:.2f}–{hi:.2f}; threshold: {rule}): "
            f"the largest loss drops are mostly on common tokens"
            + (f" ({', '.join(repr(t) for t in common)})" if common else "")
            + ", i.e. the model learns the data's format and wording, not rare quirks.")


def bias_section(bias: dict) -> Section:
    """Section "Bias of the instruction data" from the contents of eval/bias.json."""
    blocks: list = [Paragraph(
        "Biases the paper blames for the alignment tax, measured per variant by `dtm eval` "
        "(eval/bias.json); each table ends with its finding and the threshold it uses.")]
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
