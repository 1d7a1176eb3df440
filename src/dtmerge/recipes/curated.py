"""`curated`: data filtering. Keep the `fraction` of examples with the highest score, from a
user column or, by default, instruction-following difficulty (IFD, Li et al., NAACL 2024).

The default scorer is the run's base model itself (`model:`, on CUDA when there is one, else
the CPU), scoring each example once, without sampling:

    IFD(Q, A) = L(A | Q) / L(A)

L is the mean cross-entropy of the answer tokens: after the instruction as the chat template
renders it for training (Q, the generation prompt included), and after only a start token (the
tokenizer's BOS, else its EOS). The answer keeps its first `max_length // 2` tokens and the
instruction its last ones up to `max_length` in all. High IFD: the instruction helps little, a
hard example. IFD >= 1 means the instruction does not help predict the answer at all (it even
hurts): such pairs are dropped before ranking, as the IFD paper's code does, and the kept count
stays ceil(fraction * n) of all n examples while enough remain. A user `column` is ranked as
given (no drop). The kept examples go to `data/<label>/curated.jsonl`; every score, the kept
and the dropped indices to `data/<label>/scores.json`.
"""

from __future__ import annotations

import math

from pydantic import Field

from dtmerge.data.jsonl import read_jsonl, write_jsonl
from dtmerge.errors import DataError
from dtmerge.recipes.base import Recipe, RecipeParams, content_hash
from dtmerge.rundir import RunDir, atomic_write_json
from dtmerge.train.job import TrainJob


class CuratedParams(RecipeParams):
    fraction: float = Field(0.5, gt=0, le=1, description="Share of the examples kept")
    column: str | None = Field(None, description="Score column (default: IFD with the base)")
    max_length: int = Field(512, ge=8, description="Token limit when scoring IFD")


def answer_split(record: dict, tokenizer) -> tuple[str, str]:
    """(prompt text, answer text) as the chat template renders them for training."""
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str):
        return prompt, completion
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full.startswith(head):
        raise DataError("curated: the chat template renders the prompt differently inside the "
                        "conversation; score with a `column` instead")
    return head, full[len(head):]


def mean_answer_loss(model, context: list[int], answer: list[int]) -> float:
    """Mean negative log-likelihood of the answer tokens after `context`."""
    import torch

    with torch.no_grad():
        ids = torch.tensor([context + answer], device=model.device)
        logits = model(input_ids=ids).logits[0, len(context) - 1:-1].float()
        target = torch.tensor(answer, device=model.device)
        return torch.nn.functional.cross_entropy(logits, target).item()


def ifd_score(model, tokenizer, record: dict, max_length: int) -> float:
    head, answer = answer_split(record, tokenizer)
    q = tokenizer(head, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"][: max(1, max_length // 2)]
    q = q[-(max_length - len(a)):]
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return mean_answer_loss(model, q, a) / mean_answer_loss(model, [start], a)


def top_fraction(scores: list[float], fraction: float,
                 dropped: frozenset[int] = frozenset()) -> list[int]:
    """Indices of the ceil(fraction * n) highest scores (n: all of them), `dropped` left out
    before ranking, in their original order (ties: the earlier example first)."""
    keep = max(1, math.ceil(fraction * len(scores)))
    ranked = sorted((i for i in range(len(scores)) if i not in dropped),
                    key=lambda i: (-scores[i], i))[:keep]
    return sorted(ranked)


def uninformative(ifd: list[float]) -> list[int]:
    """Indices of the pairs whose instruction does not help predict the answer: IFD >= 1 (or
    not a number: an answer the model predicts perfectly alone)."""
    return [i for i, s in enumerate(ifd) if not (math.isfinite(s) and s < 1.0)]


class Curated(Recipe):
    name = "curated"
    Params = CuratedParams

    def data_file(self, run: RunDir):
        return run.data_dir / self.label / "curated.jsonl"

    def scores(self, records: list[dict]) -> list[float]:
        column = self.params.column
        if column:
            bad = next((i for i, r in enumerate(records)
                        if not isinstance(r.get(column), (int, float))), None)
            if bad is not None:
                raise DataError(f"curated: example {bad + 1} of the training data has no numeric "
                                f"'{column}' column")
            return [float(r[column]) for r in records]
        import torch

        from dtmerge.models import load_model, load_tokenizer

        device = "cuda" if torch.cuda.is_available() else None
        model, tok = load_model(self.cfg.model, device=device).eval(), load_tokenizer(self.cfg.model)
        return [ifd_score(model, tok, r, self.params.max_length) for r in records]

    def prepare(self, run: RunDir, log=print) -> None:
        out = self.data_file(run)

        def work():
            records = read_jsonl(run.all_data)
            scores = self.scores(records)
            dropped = [] if self.params.column else uninformative(scores)
            if len(dropped) == len(records):
                raise DataError(f"curated: every one of the {len(records)} training examples "
                                "has IFD >= 1 (its instruction does not help the base model "
                                "predict the answer): nothing to keep. Score with a `column` "
                                "instead, or check that the data's answers follow from the "
                                "instructions")
            kept = top_fraction(scores, self.params.fraction, frozenset(dropped))
            write_jsonl(out, [records[i] for i in kept])
            atomic_write_json(out.with_name("scores.json"),
                              {"scores": scores, "kept": kept, "dropped": dropped})
            why = self.params.column or f"IFD, {len(dropped)} with IFD >= 1 dropped first"
            log(f"{self.label}: kept {len(kept)} of {len(records)} examples by {why}")
            return {"outputs": [str(out)], "kept": len(kept), "of": len(records),
                    "dropped": len(dropped)}

        # "ifd<1": the drop rule, so data curated before the rule existed is made again.
        scorer = {"column": self.params.column} if self.params.column else {
            "ifd": self.cfg.model.model_dump(mode="json"), "drop": "ifd>=1"}
        self.step(run, "prepare", {"all": content_hash(run.all_data), **scorer}, work, log,
                  outputs=[out, out.with_name("scores.json")])

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [TrainJob(self.label, self.data_file(run), run.model(self.label))]
