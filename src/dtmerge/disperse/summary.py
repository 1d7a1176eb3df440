"""A short description of the K portions: sizes, source mix and distinctive terms."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dtmerge.disperse.base import response_text

NUM_TERMS = 8


def distinctive_terms(texts: list[str], assignment: list[int], num_portions: int,
                      num_terms: int = NUM_TERMS) -> list[list[str]]:
    """Per portion, the terms whose mean TF-IDF weight most exceeds that of the other portions.

    Args:
        texts: One text per record (the responses).
        assignment: Portion index per record.
        num_portions: K.
        num_terms: Terms kept per portion.

    Returns:
        K lists of terms, most distinctive first (empty when the texts have no vocabulary).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", max_features=20000,
                                     token_pattern=r"(?u)\b[^\W\d_][\w'-]+\b")
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # empty vocabulary
        return [[] for _ in range(num_portions)]
    vocab = vectorizer.get_feature_names_out()
    labels = np.asarray(assignment)
    result = []
    for k in range(num_portions):
        inside = labels == k
        if not inside.any():
            result.append([])
            continue
        score = np.asarray(matrix[inside].mean(axis=0)).ravel()
        if (~inside).any():  # with K=1 there is no "rest": the portion's own top terms
            score = score - np.asarray(matrix[~inside].mean(axis=0)).ravel()
        top = np.argsort(-score, kind="stable")[:num_terms]
        result.append([str(vocab[i]) for i in top if score[i] > 0])
    return result


def _shares(values: list) -> dict[str, float]:
    counts = Counter(str(v) for v in values)
    return {v: round(c / len(values), 4) for v, c in counts.most_common()}


def summarise_portions(records: list[dict], assignment: list[int], num_portions: int,
                       field: str | None = None) -> list[dict]:
    """Describe each portion for `data/summary.json`.

    Args:
        records: The normalised records.
        assignment: Portion index per record.
        num_portions: K.
        field: A grouping column (strategy `field`) whose value mix is also reported.

    Returns:
        K dicts with `portion`, `size`, `share`, `sources` (share of each `source` value, when
        the records have that column), `<field>` value shares, and `distinctive_terms`.
    """
    # One pass over the records (they may be streamed from disk): texts and column values only.
    wanted = [c for c in dict.fromkeys(["source", field]) if c]
    texts, values, present = [], {c: [] for c in wanted}, set()
    for r in records:
        texts.append(response_text(r))
        for c in wanted:
            values[c].append(r.get(c))
            if c in r:
                present.add(c)
    terms = distinctive_terms(texts, assignment, num_portions)
    labels = np.asarray(assignment)
    portions = []
    for k in range(num_portions):
        members = np.flatnonzero(labels == k)
        entry = {"portion": k, "size": len(members),
                 "share": round(len(members) / max(len(texts), 1), 4)}
        for column in (c for c in wanted if c in present):
            key = "sources" if column == "source" else column
            entry[key] = _shares([values[column][i] for i in members]) if len(members) else {}
        entry["distinctive_terms"] = terms[k]
        portions.append(entry)
    return portions
