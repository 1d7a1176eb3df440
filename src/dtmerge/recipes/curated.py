"""`curated`: data filtering. Keep the `fraction` of examples with the highest score, from a
user column or, by default, instruction-following difficulty (IFD, Li et al., NAACL 2024)
computed with the base model itself:

    IFD(Q, A) = L(A | Q) / L(A)

the mean token loss of the answer after the (chat-templated) instruction over its mean loss
after only a start token. High IFD: the instruction helps little, a hard example. The kept
examples go to `data/<label>/curated.jsonl`, every score to `data/<label>/scores.json`.
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


def top_fraction(scores: list[float], fraction: float) -> list[int]:
    """Indices of the ceil(fraction * n) highest scores, in their original order (ties: the
    earlier example first)."""
    keep = max(1, math.ceil(fraction * len(scores)))
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:keep]
    return sorted(ranked)


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
            kept = top_fraction(scores, self.params.fraction)
            write_jsonl(out, [records[i] for i in kept])
            atomic_write_json(out.with_name("scores.json"), {"scores": scores, "kept": kept})
            log(f"{self.label}: kept {len(kept)} of {len(records)} examples by "
                f"{self.params.column or 'IFD'}")
            return {"outputs": [str(out)], "kept": len(kept), "of": len(records)}

        self.step(run, "prepare", {"all": content_hash(run.all_data),
                                   "model": self.cfg.model.model_dump(mode="json")}, work, log,
                  outputs=[out, out.with_name("scores.json")])

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [TrainJob(self.label, self.data_file(run), run.model(self.label))]
