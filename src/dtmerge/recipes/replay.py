"""`replay`: the instruction data mixed with general text at `ratio` text documents per
instruction example (1:1 by default, as the paper), with the language-modelling loss on every
token of the replayed text. The mixed file is `data/<label>/mixed.jsonl`; text records are
{"text", "source": "replay"}."""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import Field

from dtmerge.data.jsonl import read_jsonl, write_jsonl
from dtmerge.data.text import read_text_documents
from dtmerge.recipes.base import Recipe, RecipeParams, check_text_file, content_hash
from dtmerge.rundir import RunDir
from dtmerge.train.job import TrainJob


class ReplayParams(RecipeParams):
    text: str | None = Field(None, description="Required: plain-text file (one document per line, or a text column)")
    ratio: float = Field(1.0, gt=0, description="Text documents per instruction example")
    seed: int = 0


def mix_with_text(records: list[dict], texts: list[str], ratio: float, seed: int) -> list[dict]:
    """The records plus round(ratio * len(records)) text records, drawn without repetition
    until the texts run out (then cycling), shuffled together."""
    rng = random.Random(seed)
    n_text = round(ratio * len(records))
    order = list(range(len(texts)))
    rng.shuffle(order)
    replayed = [{"text": texts[order[i % len(order)]], "source": "replay"} for i in range(n_text)]
    mixed = list(records) + replayed
    rng.shuffle(mixed)
    return mixed


class Replay(Recipe):
    name = "replay"
    Params = ReplayParams

    def check(self) -> None:
        check_text_file(self.label, self.params.text)

    def data_file(self, run: RunDir) -> Path:
        return run.data_dir / self.label / "mixed.jsonl"

    def prepare(self, run: RunDir, log=print) -> None:
        out = self.data_file(run)

        def work():
            records = read_jsonl(run.all_data)
            texts = read_text_documents(self.params.text)
            mixed = mix_with_text(records, texts, self.params.ratio, self.params.seed)
            write_jsonl(out, mixed)
            log(f"{self.label}: {len(records)} instruction examples + "
                f"{len(mixed) - len(records)} text documents from {self.params.text}")
            return {"outputs": [str(out)]}

        self.step(run, "prepare", {"all": content_hash(run.all_data),
                                   "text": content_hash(Path(self.params.text).expanduser())},
                  work, log, outputs=[out])

    def jobs(self, run: RunDir) -> list[TrainJob]:
        return [TrainJob(self.label, self.data_file(run), run.model(self.label),
                         spec={"replay": True})]
