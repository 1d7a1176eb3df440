"""Optional LLM-judge score for open-ended instructions (MT-bench / Vicuna-bench style).

The model under test answers each question; a judge model behind any OpenAI-compatible
endpoint (a local vLLM server, a hosted API) rates each answer from 1 to 10. Off unless
`eval.judge_url` is set. Plain `urllib` POSTs to `/v1/chat/completions`: no client library.
An API key, if the endpoint needs one, is read from the DTM_JUDGE_API_KEY environment variable.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from dtmerge.errors import ConfigError, DtmError

JUDGE_SYSTEM = (
    "You are a strict, impartial judge of answers written by an AI assistant. Consider "
    "helpfulness, relevance, accuracy, depth and clarity. Explain briefly, then give a rating "
    "from 1 to 10 in exactly this form: [[rating]]"
)

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_FALLBACK = re.compile(r"[Rr]ating:?\s*(\d+(?:\.\d+)?)")


def load_questions(path: str | Path) -> list[dict]:
    """Questions from JSONL: `question` (or MT-bench `turns[0]`, Vicuna `text`), `reference`."""
    from dtmerge.data.jsonl import read_jsonl

    out = []
    for i, rec in enumerate(read_jsonl(path)):
        q = rec.get("question") or rec.get("text") or (rec.get("turns") or [None])[0]
        if not isinstance(q, str):
            raise ConfigError(f"{path}: record {i + 1} has no 'question' (or 'turns'/'text') string")
        ref = rec.get("reference")
        out.append({"id": rec.get("id", rec.get("question_id", i)), "question": q,
                    "reference": ref[0] if isinstance(ref, list) and ref else ref})
    if not out:
        raise ConfigError(f"eval.judge_questions: {path} holds no questions")
    return out


def judge_messages(question: str, answer: str, reference: str | None = None) -> list[dict]:
    ref = f"\n\n[Reference answer]\n{reference}" if reference else ""
    user = f"[Question]\n{question}{ref}\n\n[Assistant's answer]\n{answer}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_rating(text: str) -> float | None:
    """The judge's rating (`[[7]]`, or `Rating: 7` as a fallback), clipped to 1..10."""
    m = _RATING.search(text) or _FALLBACK.search(text)
    return min(max(float(m.group(1)), 1.0), 10.0) if m else None


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def call_judge(url: str, model: str, messages: list[dict], timeout: float = 120.0) -> str:
    """POST one chat completion request; return the judge's text.

    Raises:
        DtmError: The endpoint is unreachable or answers with an error or an unexpected body.
    """
    body = json.dumps({"model": model, "messages": messages, "temperature": 0.0,
                       "max_tokens": 512}).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("DTM_JUDGE_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['DTM_JUDGE_API_KEY']}"
    req = urllib.request.Request(_endpoint(url), data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read().decode())
    except urllib.error.HTTPError as err:
        raise DtmError(f"judge endpoint {_endpoint(url)} answered HTTP {err.code}: "
                       f"{err.read()[:200]!r}; check eval.judge_url and eval.judge_model") from None
    except (urllib.error.URLError, OSError) as err:
        raise DtmError(f"cannot reach judge endpoint {_endpoint(url)} ({err}); is the server "
                       "running? (eval.judge_url)") from None
    try:
        return data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise DtmError(f"judge endpoint {_endpoint(url)} returned no choices[0].message.content: "
                       f"{str(data)[:200]}") from None


def judge_answers(questions: Sequence[dict], answers: Sequence[str], url: str,
                  model: str) -> list[dict]:
    """Rate each answer; items carry the rating (None when the judge gave none)."""
    items = []
    for q, a in zip(questions, answers):
        verdict = call_judge(url, model, judge_messages(q["question"], a, q.get("reference")))
        items.append({"doc_id": q["id"], "score": parse_rating(verdict), "pred": None,
                      "gold": q.get("reference"), "response": a, "judgement": verdict})
    return items


def generate_answers(model, tokenizer, questions: Sequence[str], max_new_tokens: int = 256) -> list[str]:
    """Greedy answers of a causal LM, prompted through its chat template when it has one."""
    import torch

    out = []
    device = next(model.parameters()).device
    for q in questions:
        if tokenizer.chat_template:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                                add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
        else:
            ids = tokenizer(q + "\n", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            gen = model.generate(ids.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        out.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return out


def judge_task_result(lm, cfg) -> dict:
    """The `llm_judge` task entry of an eval JSON for the model wrapped by lm-eval's HFLM."""
    if not cfg.judge_model or not cfg.judge_questions:
        raise ConfigError("eval.judge_url is set: also set eval.judge_model (the model name the "
                          "endpoint serves) and eval.judge_questions (a JSONL of questions)")
    questions = load_questions(cfg.judge_questions)
    max_new = int((cfg.gen_kwargs or {}).get("max_gen_toks", 256))
    answers = generate_answers(lm.model, lm.tokenizer, [q["question"] for q in questions], max_new)
    items = judge_answers(questions, answers, cfg.judge_url, cfg.judge_model)
    rated = [i["score"] for i in items if i["score"] is not None]
    mean = sum(rated) / len(rated) if rated else None
    stderr = None
    if len(rated) > 1:
        var = sum((r - mean) ** 2 for r in rated) / (len(rated) - 1)
        stderr = math.sqrt(var / len(rated))
    return {"metric": "judge_score", "filter": "none", "score": mean, "stderr": stderr,
            "n": len(rated), "metrics": {"judge_score": mean, "unrated": len(items) - len(rated)},
            "category": "instruction", "subtasks": [], "judge_model": cfg.judge_model,
            "items": items}
