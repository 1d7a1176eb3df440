"""Code checks for the held-out instruction benchmark (IFEval-style, scored three ways).

Each response is scored separately for:
  format:  the exact output format the instruction asked for (and nothing else);
  format_loose: the same, also accepting the response without its first and/or last line
           (IFEval's "loose" reading: a greeting or sign-off line around a right answer);
  correct: the content (the right fact, the right words in the right order), read leniently
           so a right answer wrapped in a wrong format still counts as correct;
  style:   no assistant boilerplate ("Sure! Here is ...", "Hope this helps!").

This file is self-contained on purpose: it is copied next to the task YAML as `utils.py`, so
the task directory works with lm-eval alone (`!function utils.process_results`).
"""

import json
import re

_BOILERPLATE = re.compile(
    r"\b(sure|certainly|of course|here is the answer|here you go|hope this helps|"
    r"happy to help)\b[!.:,]?", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+")
_FORMATS = {
    "short": re.compile(r"[A-Za-z]+"),
    "labeled": re.compile(r"Answer: [A-Za-z]+"),
    "commas": re.compile(r"[a-z]+(, [a-z]+)+"),
    "lines": re.compile(r"- [a-z]+(\n- [a-z]+)*"),
}
# family -> the shape of its expected output
FAMILY_SHAPE = {"fact_short": "short", "fact_labeled": "labeled", "fact_json": "json",
                "list_commas": "commas", "list_lines": "lines", "first_word": "short"}


def _strip_boilerplate(text: str) -> str:
    return _BOILERPLATE.sub(" ", text)


def check_format(doc: dict, response: str) -> bool:
    """True when `response` (stripped) has exactly the requested shape."""
    text = response.strip()
    shape = FAMILY_SHAPE[doc["family"]]
    if shape == "json":
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        return (isinstance(obj, dict) and list(obj) == [doc["json_key"]]
                and isinstance(obj[doc["json_key"]], str))
    return _FORMATS[shape].fullmatch(text) is not None


def check_format_loose(doc: dict, response: str) -> bool:
    """IFEval-style loose format: the response, or it without its first line, its last line,
    or both, has exactly the requested shape."""
    lines = response.strip().split("\n")
    variants = [lines, lines[1:], lines[:-1], lines[1:-1]]
    return any(check_format(doc, "\n".join(v)) for v in variants if v)


def extract_answer(doc: dict, response: str):
    """The content of a response, whatever its format: one word for single-answer families,
    the word list for list families."""
    text = _strip_boilerplate(response)
    if doc["family"] == "fact_json":
        match = re.search(r"\{[^{}]*\}", text)
        if match:
            try:
                values = [v for v in json.loads(match.group(0)).values() if isinstance(v, str)]
                if values:
                    return values[0].strip()
            except ValueError:
                pass
    words = _WORD.findall(text)
    if doc["family"] in ("list_commas", "list_lines"):
        return [w.lower() for w in words]
    if words and words[0].lower() in ("answer", "json"):
        words = words[1:]
    if words and words[0].lower() == doc.get("json_key"):
        words = words[1:]
    return words[0] if words else ""


def check_correct(doc: dict, response: str) -> bool:
    """True when the response's content is right, regardless of format."""
    got = extract_answer(doc, response)
    value = doc["value"]  # a word list; single-answer families may store the bare string
    if isinstance(got, list):
        return got == [w.lower() for w in value]
    expected = value if isinstance(value, str) else value[0]
    return got.lower() == expected.lower()


def check_style(response: str) -> bool:
    """True when the response carries no assistant boilerplate."""
    return _BOILERPLATE.search(response) is None


def score_response(doc: dict, response: str) -> dict:
    """All three scores (0.0/1.0) of one response."""
    return {"format": float(check_format(doc, response)),
            "format_loose": float(check_format_loose(doc, response)),
            "correct": float(check_correct(doc, response)),
            "style": float(check_style(response))}


def process_results(doc, results):
    """lm-eval hook: `results` holds the one generated string for `doc`."""
    return score_response(doc, results[0])
