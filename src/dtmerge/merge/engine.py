"""`merge_models`: stream K models (full or LoRA) over one base into a merged model directory.

Phases: open and validate every input (cheap: headers and configs only) -> method set-up
(e.g. Fisher estimation) -> for each base tensor, for each row block: read the base block and
each model's block (or LoRA update), combine, optionally interpolate with the base, append to
the output shard -> side files (config, generation config, tokenizer) and merge_record.json.
Peak memory is a few (K + 1)-row-block buffers plus the LoRA factors, whatever the model size.
Everything is written into a temporary sibling of `out_dir` and renamed only on success.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from dtmerge.errors import MergeError
from dtmerge.merge.adapter_out import write_concat_adapter
from dtmerge.merge.methods import get_method
from dtmerge.merge.methods.base import Block
from dtmerge.merge.sources import FullModelSource, open_source
from dtmerge.merge.tensor_io import OutTensor, ShardWriter, TensorInfo, unmap
from dtmerge.merge.validate import validate_inputs
from dtmerge.rundir import atomic_dir, atomic_write_json, hash_path

BLOCK_ELEMENTS = 1 << 22  # 4M values (16 MB in fp32) per model per block
MAP_MIN_BYTES = 1 << 20  # blocks this large are mapped (zero-copy) rather than read
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "spiece.model", "vocab.txt")


def row_blocks(info: TensorInfo, block_elements: int) -> Iterator[tuple[int, int] | None]:
    """Row ranges covering a tensor with about `block_elements` values each."""
    if not info.shape:
        yield None
        return
    step = max(1, block_elements // max(info.row_numel, 1))
    for start in range(0, info.shape[0], step):
        yield start, min(info.shape[0], start + step)


def resolve_weights(weights: list[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise MergeError(f"{len(weights)} weights given for {count} models: give one per model")
    weights = [float(w) for w in weights]
    if abs(sum(weights)) < 1e-12:
        raise MergeError(f"merge weights {weights} sum to zero")
    return weights


def merge_models(base: str | Path, models: list[str | Path], out_dir: str | Path,
                 method: str = "linear", weights: list[float] | None = None,
                 params: dict | None = None, base_interpolation: float | None = None,
                 shard_size: str = "2GB", as_adapter: bool = False,
                 fisher_data: list[Path] | None = None, block_elements: int = BLOCK_ELEMENTS,
                 log: Callable[[str], None] | None = None) -> dict:
    """Merge fine-tuned models and/or LoRA adapters of one base into a new model directory.

    Args:
        base: the base model directory (safetensors weights).
        models: full fine-tuned model directories and/or PEFT LoRA adapter directories.
        out_dir: where the merged Hugging Face model (or adapter) is written.
        method: a registered merge method (`dtm merge --list`).
        weights: one weight per model; default uniform (1/K).
        params: method parameters (e.g. {"density": 0.5}); unknown keys are rejected.
        base_interpolation: t in base + t * (merged - base) (WiSE-FT); None keeps the merge.
        shard_size: largest output shard, e.g. "2GB".
        as_adapter: write a rank-concatenated LoRA adapter (all inputs LoRA, linear methods).
        fisher_data: per-model JSONL files for method "fisher".
        block_elements: values per block per model (memory vs. speed).
        log: progress messages.

    Returns:
        The merge record, also written to out_dir/merge_record.json.

    Raises:
        MergeError: inputs that cannot be merged, naming the first mismatch.
    """
    started = time.time()
    log = log or (lambda _msg: None)
    merge_method = get_method(method)
    params = merge_method.check_params(params)
    base_src = FullModelSource(base)
    sources = [open_source(p, base_src) for p in models]
    weights = resolve_weights(weights, len(sources))
    validate_inputs(base_src, sources)
    if as_adapter and not merge_method.linear_in_deltas:
        raise MergeError(f"as_adapter: '{method}' is not linear in the updates, so it has no exact "
                         "adapter form; use linear or task_arithmetic, or a full-model output")
    t = None if base_interpolation is None else float(base_interpolation)
    out_dir = Path(out_dir)
    extras: dict = {}
    try:
        with atomic_dir(out_dir) as tmp, \
                tempfile.TemporaryDirectory(prefix=".dtm-merge-", dir=out_dir.parent) as work:
            extras = merge_method.setup(sources, weights, params, fisher_data=fisher_data,
                                        base_path=base_src.path, workdir=work, log=log)
            if as_adapter:
                coeffs = merge_method.coefficients(weights, params)
                ranks = write_concat_adapter(sources, [c * (1.0 if t is None else t)
                                                       for c in coeffs], tmp)
                output = {"format": "lora_adapter", "modules": len(ranks),
                          "rank": max(ranks.values(), default=0)}
            else:
                output = stream_merge(base_src, sources, merge_method, weights, params, extras,
                                      t, tmp, shard_size, block_elements)
                copy_model_files(base_src, tmp)
            copy_tokenizer(base_src, sources, tmp)
            record = {
                "method": merge_method.name, "pretty_name": merge_method.pretty_name,
                "reference_url": merge_method.reference_url, "params": params,
                "weights": weights, "base_interpolation": t,
                "base": {"path": str(base_src.path.resolve()), "hash": hash_path(base_src.path)},
                "models": [_describe(s) for s in sources],
                "fisher_data": [str(p) for p in fisher_data] if fisher_data else None,
                "output": output, "seconds": round(time.time() - started, 3),
            }
            atomic_write_json(tmp / "merge_record.json", record)
    finally:
        for s in [base_src, *sources]:
            s.close()
        for reader in extras.get("fisher", []):
            reader.close()
    log(f"[merge] {method} of {len(sources)} models -> {out_dir} in {record['seconds']} s")
    return record


def _describe(src) -> dict:
    d = {"path": str(Path(src.path).resolve()), "kind": src.kind, "hash": hash_path(src.path)}
    if src.kind == "lora":
        d["ranks"] = sorted({m.rank for m in src.modules.values()})
        d["modules"] = len(src.modules)
    return d


class BlockReader:
    """Reads one row block of every input into a reused (K, *block) buffer.

    Row k holds model k's weights or, in delta space, its task vector W_k - W_0. The buffers
    are allocated once per merge and reused for every block (no per-block allocation).
    """

    def __init__(self, base_src: FullModelSource, sources: list, block_elements: int):
        self.base_src, self.sources = base_src, sources
        self.block_elements = block_elements
        self._pools: dict = {}

    def _buffer(self, key: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buf = self._pools.get((key, dtype))
        if buf is None or buf.numel() < numel:
            buf = self._pools[(key, dtype)] = torch.empty(numel, dtype=dtype)
        return buf[:numel]

    def base(self, name: str, rows, info: TensorInfo, work: torch.dtype) -> torch.Tensor:
        shape = block_shape(info, rows)
        numel = math.prod(shape)
        if info.dtype == work:
            return self.base_src.read(name, rows, self._buffer("base", numel, work)).view(shape)
        return self.base_src.read(name, rows).to(work)

    def stacked(self, name: str, rows, info: TensorInfo, work: torch.dtype,
                base: torch.Tensor | None, as_delta: bool, key: str = "stack") -> torch.Tensor:
        shape = block_shape(info, rows)
        numel = math.prod(shape)
        out = self._buffer(key, numel * len(self.sources), work).view(len(self.sources), *shape)
        for k, src in enumerate(self.sources):
            row = out[k]
            if src.kind == "full" and info.dtype == work and row.nbytes >= max(MAP_MIN_BYTES, 1):
                view, mapping = src.map_block(name, rows)
                if as_delta:
                    torch.sub(view, base, out=row)  # read and subtract in one pass
                else:
                    row.copy_(view)
                del view
                unmap(mapping)
                continue
            if src.kind == "full":
                if info.dtype == work:
                    src.read(name, rows, row)
                else:
                    row.copy_(src.read(name, rows))
                if as_delta:
                    row.sub_(base)
                continue
            delta = src.delta(name, rows)
            if delta is None:
                row.zero_() if as_delta else row.copy_(base)
            else:
                row.copy_(delta)
                if not as_delta:
                    row.add_(base)
        return out


    def average(self, name: str, rows, info: TensorInfo, weights: list[float],
                out: torch.Tensor) -> None:
        """Weighted average of full models' blocks into `out`, read from mapped pages."""
        shape = block_shape(info, rows)
        acc = self._buffer("average", math.prod(shape), info.dtype).view(shape)
        views, mappings = [], []
        for src in self.sources:
            if acc.nbytes >= max(MAP_MIN_BYTES, 1):
                view, mapping = src.map_block(name, rows)
                mappings.append(mapping)
            else:
                view = src.read(name, rows)
            views.append(view)
        weighted_sum_into(views, weights, acc)
        del views, view
        for mapping in mappings:
            unmap(mapping)
        # One cheap reduction instead of an isfinite pass: NaN/inf anywhere makes it non-finite.
        if not math.isfinite(float(acc.sum())) and not torch.isfinite(acc).all():
            raise MergeError(f"merging tensor '{name}' gave NaN or inf values: check the inputs "
                             "for NaN weights")
        torch.div(acc, len(weights) if len(set(weights)) == 1 else sum(weights), out=out)


def weighted_sum_into(views: list[torch.Tensor], weights: list[float], acc: torch.Tensor):
    """w_1 v_1 + w_2 v_2 + ... in input order into `acc` (equal weights: plain sum).

    Divided by sum(w) afterwards, this is the same floating-point sequence as torch's sum
    over a stacked dim 0 for K <= 4, so the average equals mergekit's normalised linear merge
    bit for bit there (within an ulp for larger K).
    """
    if len(set(weights)) == 1:
        torch.add(views[0], views[1], out=acc) if len(views) > 1 else acc.copy_(views[0])
        for v in views[2:]:
            acc.add_(v)
        return
    torch.mul(views[0], weights[0], out=acc)
    for w, v in zip(weights[1:], views[1:]):
        acc.add_(v * w)


def block_shape(info: TensorInfo, rows) -> tuple[int, ...]:
    if rows is None:
        return tuple(info.shape)
    return (rows[1] - rows[0], *info.shape[1:])


def stream_merge(base_src: FullModelSource, sources: list, method, weights: list[float],
                 params: dict, extras: dict, t: float | None, out: Path, shard_size: str,
                 block_elements: int) -> dict:
    """The tensor-by-tensor, block-by-block merge loop; returns a description of the output."""
    names = base_src.names()
    plan = [OutTensor(n, base_src.info(n).dtype, base_src.info(n).shape) for n in names]
    writer = ShardWriter(out, plan, shard_size)
    reader = BlockReader(base_src, sources, block_elements)
    deltas_space = method.space == "deltas"
    for name in names:
        info = base_src.info(name)
        touched = [s.kind == "full" or name in s.modules for s in sources]
        if not info.dtype.is_floating_point or not any(touched):
            for rows in row_blocks(info, block_elements):  # nothing to merge: the base as is
                writer.write(name, base_src.read(name, rows))
            continue
        work = torch.float64 if info.dtype == torch.float64 else torch.float32
        # A weighted average of full models needs no base weights: skip reading them.
        need_base = deltas_space or t is not None or not all(s.kind == "full" for s in sources)

        blocks = list(row_blocks(info, block_elements))
        cached = None
        if method.needs_prepare and len(blocks) == 1:
            # One block: read it once and let prepare and combine share it.
            base = reader.base(name, blocks[0], info, work)
            cached = (base, reader.stacked(name, blocks[0], info, work, base, deltas_space))

        def delta_blocks() -> Iterator[torch.Tensor]:
            if cached is not None:
                yield cached[1]
                return
            for rows in blocks:
                base = reader.base(name, rows, info, work)
                yield reader.stacked(name, rows, info, work, base, True, key="prepare")

        state = (method.prepare(name, info.numel, delta_blocks, weights, params)
                 if method.needs_prepare else None)
        plain_average = (method.name == "linear" and not need_base and info.dtype == work)
        for rows in blocks:
            if plain_average:  # the paper's merge of full models: no stacking, no copies;
                # the final division writes straight into the output file's pages
                with writer.block_out(name, block_shape(info, rows), MAP_MIN_BYTES) as out_block:
                    reader.average(name, rows, info, weights, out_block)
                continue
            if cached is not None:
                base_block, stacked = cached
            else:
                base_block = reader.base(name, rows, info, work) if need_base else None
                stacked = reader.stacked(name, rows, info, work, base_block, deltas_space)
            merged = method.combine(Block(name, rows, base_block, stacked, weights, params,
                                          state, extras))
            if deltas_space:
                result = base_block.add_(merged if t is None else merged.mul_(t))
            else:
                result = merged if t is None else base_block.add_(merged.sub_(base_block).mul_(t))
            # One cheap reduction instead of an isfinite pass: NaN/inf anywhere makes it non-finite.
            if not math.isfinite(float(result.sum())) and not torch.isfinite(result).all():
                raise MergeError(f"merging tensor '{name}' gave NaN or inf values: check the "
                                 "inputs for NaN weights and the method parameters")
            writer.write(name, result)
    files = writer.close()
    return {"format": "full", "tensors": len(names), "files": sorted(set(files.values())),
            "bytes": sum(p.nbytes for p in plan)}


def copy_model_files(base_src: FullModelSource, out: Path) -> None:
    """config.json and generation_config.json of the base (or derived from its config)."""
    shutil.copy2(base_src.path / "config.json", out / "config.json")
    gen = base_src.path / "generation_config.json"
    if gen.is_file():
        shutil.copy2(gen, out / "generation_config.json")
    else:
        cfg = base_src.config.get("text_config") or base_src.config
        derived = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg}
        (out / "generation_config.json").write_text(json.dumps({"_from_model_config": True,
                                                                **derived}, indent=2))


def copy_tokenizer(base_src: FullModelSource, sources: list, out: Path) -> None:
    """Tokenizer files of the first input that has them (it carries the chat template used in
    training), else of the base."""
    for directory in [*(Path(s.path) for s in sources), base_src.path]:
        if (directory / "tokenizer_config.json").is_file():
            for name in TOKENIZER_FILES:
                if (directory / name).is_file():
                    shutil.copy2(directory / name, out / name)
            return
