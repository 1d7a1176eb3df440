"""`merge_models`: stream K models (full or LoRA) over one base into a merged model directory.

Phases: open and validate every input (cheap: headers and configs only) -> method set-up
(e.g. Fisher estimation) -> for each base tensor, for each row block: read the base block and
each model's block (or LoRA update), combine, optionally interpolate with the base, append to
the output shard -> side files (config, generation config, tokenizer) and merge_record.json.
Peak memory is a few (K + 1)-row-block buffers plus the LoRA factors, whatever the model size.
Everything is written into a temporary sibling of `out_dir` and renamed only on success.

Blocks are cache-sized (CACHE_BLOCK_ELEMENTS values per model) so that each elementwise pass
of a method runs on data already in the CPU cache: reading a block from the page cache into
reused buffers (`readinto`), combining and writing it (`pwrite`) cost about one pass over
memory each. Measured on the 4 x 1.07 GB benchmark models, a linear merge spends ~0.25 s
reading 4.3 GB, ~0.15 s adding and ~0.5 s writing 1.07 GB (page-cache allocation of the new
file), against 2-3x more per pass with 16 MB blocks. Reads through mappings of the inputs
(zero-copy) cost more than the copy: a page fault per 4-64 KB.

Two loops share this: methods combining task vectors with torch operators (linear, task
arithmetic, Fisher) merge each block in the main thread while threads read the next ones
(`merge_tensor`); the compiled methods (TIES, DARE) hand each block's whole work to worker
threads, kernels included, and the main thread only writes (`merge_tasks`, see there).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from dtmerge.errors import MergeError
from dtmerge.merge.adapter_out import write_concat_adapter
from dtmerge.merge.finish import NonFiniteMerge, finish_block, write_scaled
from dtmerge.merge.methods import get_method, kernels, sparse
from dtmerge.merge.methods.base import Block
from dtmerge.merge.options import MergeJob, MergeOptions
from dtmerge.merge.sources import FullModelSource, open_source
from dtmerge.merge.tensor_io import OutTensor, ShardWriter, TensorInfo, unmap
from dtmerge.merge.validate import blame_non_finite, validate_inputs
from dtmerge.process_guard import remove_dead_temporaries
from dtmerge.rundir import atomic_dir, atomic_write_json, hash_path

CACHE_BLOCK_ELEMENTS = 1 << 18  # 256K values (1 MB fp32) per model: a block's K + 3 buffers
# stay in the L2/L3 cache (TIES' chain of ops, K=4, 1 thread: 3.9 ns per value at 256K, 4.4-4.6
# at 16K-64K, 7.8 at 1M, 11.3 at 4M)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "spiece.model", "vocab.txt")


# Scratch folders of running merges: `.dtm-merge-<pid>-<random>` beside the output.
WORKDIR_PREFIX = ".dtm-merge-"


def row_blocks(info: TensorInfo, block_elements: int) -> Iterator[tuple[int, int] | None]:
    """Row ranges covering a tensor with about `block_elements` values each."""
    if not info.shape:
        yield None
        return
    step = max(1, block_elements // max(info.row_numel, 1))
    for start in range(0, info.shape[0], step):
        yield start, min(info.shape[0], start + step)


def merge_models(base: str | Path, models: list[str | Path], out_dir: str | Path,
                 options: MergeOptions | None = None, *,
                 log: Callable[[str], None] | None = None, **overrides) -> dict:
    """Merge fine-tuned models and/or LoRA adapters of one base into a new model directory.

    Args:
        base: the base model directory (safetensors weights).
        models: full fine-tuned model directories and/or PEFT LoRA adapter directories.
        out_dir: where the merged Hugging Face model (or adapter) is written.
        options: a `MergeOptions`; keyword `overrides` replace its fields, e.g.
            `merge_models(b, ms, out, method="ties", params={"density": 0.5})`. Fields:
            method (a registered merge method, `dtm merge --list`); weights (one per model,
            default 1/K); params (method parameters, unknown keys rejected);
            base_interpolation (t in base + t * (merged - base), WiSE-FT); update_scale (lambda
            on the merged update, may exceed 1); shard_size (largest output shard, "2GB");
            as_adapter (a rank-concatenated LoRA adapter: all inputs LoRA, linear methods);
            fisher_data (per-model JSONL files for "fisher"); block_elements (the most values
            per block per model; blocks are cache-sized up to this, and TIES reads a tensor of
            at most this many values once, whole; results never depend on it).
        log: progress messages.

    Returns:
        The merge record, also written to out_dir/merge_record.json.

    Raises:
        MergeError: inputs that cannot be merged, naming the first mismatch.
    """
    opts = MergeOptions.of(options, overrides)
    return merge_scaled(base, models, {Path(out_dir): opts.update_scale}, opts, log=log)[
        Path(out_dir)]


def merge_scaled(base: str | Path, models: list[str | Path], outs: dict[Path, float],
                 options: MergeOptions, log: Callable[[str], None] | None = None
                 ) -> dict[Path, dict]:
    """One merge written at several update scales, out_dir -> scale (`options.update_scale`
    ignored): the inputs are read and combined once, and base + scale * (merged - base) is
    written per output. Each output equals `merge_models` with that `update_scale`, bit for
    bit. Returns each output's merge record."""
    started = time.time()
    log = log or (lambda _msg: None)
    opts = options
    merge_method = get_method(opts.method)
    params = merge_method.check_params(dict(opts.params))
    if merge_method.compiled and merge_method.space == "deltas" and not opts.as_adapter:
        kernels.load_in_background((torch.float32,))  # beside everything up to the kernels' use
    base_src = FullModelSource(base)
    sources = [open_source(p, base_src) for p in models]
    validate_inputs(base_src, sources)
    weights = opts.resolved_weights(len(sources))
    if opts.as_adapter and not merge_method.linear_in_deltas:
        raise MergeError(f"as_adapter: '{opts.method}' is not linear in the updates, so it has no "
                         "exact adapter form; use linear or task_arithmetic, or a full-model output")
    outs = {Path(o): float(s) for o, s in outs.items()}
    extras: dict = {}
    for parent in {o.parent for o in outs}:
        parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(parent, WORKDIR_PREFIX)  # left by a killed merge
    try:
        with contextlib.ExitStack() as stack:
            tmps = [stack.enter_context(atomic_dir(o)) for o in outs]
            work = stack.enter_context(tempfile.TemporaryDirectory(
                prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=next(iter(outs)).parent))
            fisher = list(opts.fisher_data) if opts.fisher_data else None
            extras = merge_method.setup(sources, weights, params, fisher_data=fisher,
                                        base_path=base_src.path, workdir=work, log=log)
            job = MergeJob(base_src, tuple(sources), merge_method, weights, params, extras,
                           tuple(opts.scale_for(s) for s in outs.values()), opts.block_elements)
            outputs = _write_outputs(job, opts, tmps)
            records = {}
            for (out, scale), tmp, output in zip(outs.items(), tmps, outputs):
                copy_tokenizer(base_src, sources, tmp)
                records[out] = _record(job, opts, scale, output, started)
                atomic_write_json(tmp / "merge_record.json", records[out])
    finally:
        for s in [base_src, *sources]:
            s.close()
        for reader in extras.get("fisher", []):
            reader.close()
    seconds = round(time.time() - started, 3)
    log(f"[merge] {opts.method} of {len(sources)} models -> "
        f"{', '.join(map(str, outs))} in {seconds} s")
    return records


def _write_outputs(job: MergeJob, opts: MergeOptions, tmps: list[Path]) -> list[dict]:
    """The merged weights (or adapters) into `tmps`; returns each record's `output` entry."""
    if opts.as_adapter:
        outputs = []
        coeffs = job.method.coefficients(job.weights, job.params)
        for tmp, scale in zip(tmps, job.scales):
            ranks = write_concat_adapter(job.sources, [c * (1.0 if scale is None else scale)
                                                       for c in coeffs], tmp)
            outputs.append({"format": "lora_adapter", "modules": len(ranks),
                            "rank": max(ranks.values(), default=0)})
        return outputs
    outputs = stream_merge(job, tmps, opts.shard_size)
    for tmp in tmps:
        copy_model_files(job.base_src, tmp)
    return outputs


def _record(job: MergeJob, opts: MergeOptions, update_scale: float, output: dict,
            started: float) -> dict:
    method = job.method
    return {
        "method": method.name, "pretty_name": method.pretty_name,
        "reference_url": method.reference_url, "params": job.params,
        "weights": job.weights, "base_interpolation": opts.base_interpolation,
        **({"update_scale": update_scale} if update_scale != 1.0 else {}),
        "base": {"path": str(job.base_src.path.resolve()), "hash": hash_path(job.base_src.path)},
        "models": [_describe(s) for s in job.sources],
        "fisher_data": [str(p) for p in opts.fisher_data] if opts.fisher_data else None,
        "output": output, "seconds": round(time.time() - started, 3),
    }


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

    def base(self, name: str, rows, info: TensorInfo, work: torch.dtype,
             slot: int | str = 0) -> torch.Tensor:
        shape = block_shape(info, rows)
        numel = math.prod(shape)
        if info.dtype == work:
            return self.base_src.read(name, rows, self._buffer(f"base{slot}", numel, work)
                                      ).view(shape)
        return self.base_src.read(name, rows).to(work)

    def _fill(self, name: str, rows, info: TensorInfo, work: torch.dtype, key: str
              ) -> tuple[torch.Tensor, list[bool]]:
        """(K, *block) in the `key` buffer: full models' weights as stored (cast to `work`),
        LoRA adapters' updates, zero where an adapter does not touch the tensor; and, per
        row, whether it was read (False: that zero row)."""
        shape = block_shape(info, rows)
        numel = math.prod(shape)
        out = self._buffer(key, numel * len(self.sources), work).view(len(self.sources), *shape)
        read = []
        for k, src in enumerate(self.sources):
            row = out[k]
            if src.kind == "full":
                if info.dtype == work:
                    src.read(name, rows, row)
                else:
                    row.copy_(src.read(name, rows))
                read.append(True)
                continue
            delta = src.delta(name, rows)
            row.zero_() if delta is None else row.copy_(delta)
            read.append(delta is not None)
        return out, read

    def stacked(self, name: str, rows, info: TensorInfo, work: torch.dtype,
                base: torch.Tensor | None, as_delta: bool, key: str = "stack") -> torch.Tensor:
        out, read = self._fill(name, rows, info, work, key)
        for row, src, was_read in zip(out, self.sources, read):
            if src.kind == "full":
                if as_delta:
                    row.sub_(base)
            elif not as_delta:  # a LoRA update on the base; an untouched tensor is the base
                row.add_(base) if was_read else row.copy_(base)
        return out

    def raw(self, name: str, rows, info: TensorInfo, work: torch.dtype, key: str
            ) -> torch.Tensor:
        """(K, *block): full models' weights as stored (cast to `work`), LoRA adapters' updates
        (zero where an adapter does not touch the tensor); `raw_rows` says which is which."""
        return self._fill(name, rows, info, work, key)[0]

    def raw_rows(self) -> list[bool]:
        """Which rows of `raw` hold model weights (their task vector is weights - base)."""
        return [src.kind == "full" for src in self.sources]

    def sample(self, name: str, work: torch.dtype, positions: torch.Tensor) -> torch.Tensor:
        """Every model's task vector at sorted flat `positions` of tensor `name`: (K, m).

        Full models are read through mappings of one window of the tensor at a time (only
        the touched pages are read, and at most a window of them stays resident); LoRA
        updates are computed at just those positions.
        """
        info = self.base_src.info(name)
        base = _gather(self.base_src, name, info, positions, self.block_elements).to(work)
        out = torch.empty(len(self.sources), len(positions), dtype=work)
        for k, src in enumerate(self.sources):
            if src.kind == "full":
                values = _gather(src, name, info, positions, self.block_elements)
                torch.sub(values.to(work), base, out=out[k])
            elif name in src.modules:
                out[k] = src.modules[name].delta_at(positions)
            else:
                out[k] = 0
        return out


def _gather(src: FullModelSource, name: str, info: TensorInfo, positions: torch.Tensor,
            window: int) -> torch.Tensor:
    """Values at sorted flat positions, mapping about `window` values of the tensor at a time."""
    out = torch.empty(len(positions), dtype=info.dtype)
    for rows in row_blocks(info, window):
        first, end = flat_range(info, rows)
        lo, hi = torch.searchsorted(positions, torch.tensor([first, end])).tolist()
        if lo == hi:
            continue
        view, mapping = src.map_block(name, rows)
        out[lo:hi] = view.reshape(-1)[positions[lo:hi] - first]
        del view
        unmap(mapping)
    return out


def block_shape(info: TensorInfo, rows) -> tuple[int, ...]:
    if rows is None:
        return tuple(info.shape)
    return (rows[1] - rows[0], *info.shape[1:])


def flat_range(info: TensorInfo, rows) -> tuple[int, int]:
    """The flat [start, end) of a row block."""
    return (0, info.numel) if rows is None else (rows[0] * info.row_numel, rows[1] * info.row_numel)


def stream_merge(job: MergeJob, outs: list[Path], shard_size: str) -> list[dict]:
    """The tensor-by-tensor, block-by-block merge loop (one of the two, see the module's
    notes); returns a description of the output.

    Torch runs single-threaded here: cache-sized blocks make each op a few dozen microseconds,
    and with two threads every op waits for the second one; on a busy machine (measured: load
    5 on 2 cores) that wait is a scheduler slice, and a TIES merge took 180 s instead of 11 s.
    Two more threads read the next blocks instead (`read_ahead`, `WholeTensors`): no op waits
    for them, only the next block does.
    """
    base_src = job.base_src
    names = base_src.names()
    plan = [OutTensor(n, base_src.info(n).dtype, base_src.info(n).shape) for n in names]
    writers = [ShardWriter(out, plan, shard_size) for out in outs]
    reader = BlockReader(base_src, list(job.sources), job.block_elements)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if job.method.compiled and job.method.space == "deltas":
            with ThreadPoolExecutor(WORKERS, thread_name_prefix="dtm-merge-work") as pool:
                run_in_order(pool, merge_tasks(job, reader, writers, names), IN_FLIGHT)
        else:
            with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="dtm-merge-read") as pool:
                wholes = WholeTensors(job, reader, pool, names)
                for name in names:
                    merge_tensor(name, job, reader, writers, pool, wholes)
    finally:
        torch.set_num_threads(threads)
    return [{"format": "full", "tensors": len(names), "files": sorted(set(files.values())),
             "bytes": sum(p.nbytes for p in plan)} for files in (w.close() for w in writers)]


def merges(job: MergeJob, name: str) -> bool:
    """Whether tensor `name` is merged (else the base's is copied: integer buffers, or
    tensors no LoRA adapter touches)."""
    touched = any(s.kind == "full" or name in s.modules for s in job.sources)
    return touched and job.base_src.info(name).dtype.is_floating_point


def reads_whole(job: MergeJob, name: str) -> bool:
    """A method that looks at the whole tensor first (TIES) reads a tensor of at most
    block_elements values once, whole: its sample, its prepare pass and its merge then slice
    memory instead of reading the inputs two more times. Larger tensors stream twice."""
    return (job.method.needs_prepare and job.method.space == "deltas" and merges(job, name)
            and job.base_src.info(name).numel <= job.block_elements)


def work_dtype(info: TensorInfo) -> torch.dtype:
    return torch.float64 if info.dtype == torch.float64 else torch.float32


class WholeTensors:
    """The tensors read whole (`reads_whole`), each read and turned into task vectors in the
    read thread while the one before it merges (two buffer slots, alternating)."""

    def __init__(self, job: MergeJob, reader: BlockReader, pool: ThreadPoolExecutor | None,
                 names: list[str]):
        self.job, self.reader, self.pool = job, reader, pool
        order = [n for n in names if reads_whole(job, n)]
        self.after = dict(zip(order, order[1:]))
        self.slot = {n: i % 2 for i, n in enumerate(order)}
        self.pending: dict = {}

    def take(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, (K, numel) task vectors) of `name`, flat; starts reading the next one."""
        future = self.pending.pop(name, None)
        loaded = future.result() if future is not None else self._load(name)
        following = self.after.get(name)
        if following is not None and self.pool is not None:
            self.pending[following] = self.pool.submit(self._load, following)
        return loaded

    def _load(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        info = self.job.base_src.info(name)
        work, slot = work_dtype(info), self.slot[name]
        base = self.reader.base(name, None, info, work, f"whole{slot}")
        deltas = self.reader.stacked(name, None, info, work, base, True, f"whole_stack{slot}")
        return base.view(-1), deltas.view(len(self.job.sources), -1)


READ_AHEAD = 2  # blocks read ahead of the one being merged (by READ_AHEAD threads)


def read_ahead(pool: ThreadPoolExecutor | None, blocks: list, read: Callable) -> Iterator:
    """read(rows, slot) of each block in turn, the next READ_AHEAD blocks read in `pool` while
    the caller works on this one. READ_AHEAD + 1 buffer slots rotate: when the caller asks
    for block i + 1 it is done with block i, whose slot block i + 1 + READ_AHEAD then fills."""
    if pool is None or len(blocks) < 2:
        yield from (read(rows, 0) for rows in blocks)
        return
    slots = READ_AHEAD + 1
    pending = deque(pool.submit(read, rows, i % slots)
                    for i, rows in enumerate(blocks[:READ_AHEAD]))
    try:
        for i in range(len(blocks)):
            block = pending.popleft().result()
            if i + READ_AHEAD < len(blocks):
                pending.append(pool.submit(read, blocks[i + READ_AHEAD], (i + READ_AHEAD) % slots))
            yield block
    finally:  # the caller stopped early (an error): let the reads in flight end first
        for future in pending:
            future.cancel() or future.exception()


def merge_tensor(name: str, job: MergeJob, reader: BlockReader,
                 writers: list[ShardWriter], read_pool: ThreadPoolExecutor | None,
                 wholes: WholeTensors) -> None:
    """Merge one tensor block by block and append it to every output (one per scale)."""
    base_src, sources, method = job.base_src, job.sources, job.method
    info = base_src.info(name)
    step = min(job.block_elements, CACHE_BLOCK_ELEMENTS)
    if not merges(job, name):
        for rows in row_blocks(info, step):  # nothing to merge: the base as is
            block = base_src.read(name, rows)
            for writer in writers:
                writer.write(name, block)
        return
    work = work_dtype(info)
    deltas_space = method.space == "deltas"
    # A weighted average of full models needs no base weights: skip reading them.
    need_base = (deltas_space or any(t is not None for t in job.scales)
                 or not all(s.kind == "full" for s in sources))
    blocks = list(row_blocks(info, step))
    count = len(sources)
    whole = reads_whole(job, name)
    if whole:
        base_all, deltas_all = wholes.take(name)

    def read_block(rows, slot: int = 0) -> tuple[torch.Tensor | None, torch.Tensor]:
        if whole:
            (a, b), shape = flat_range(info, rows), block_shape(info, rows)
            return base_all[a:b].view(shape), deltas_all[:, a:b].view(count, *shape)
        base = reader.base(name, rows, info, work, slot) if need_base else None
        return base, reader.stacked(name, rows, info, work, base, deltas_space, f"stack{slot}")

    pool = None if whole else read_pool

    state = None
    if method.needs_prepare:
        def sample(positions: torch.Tensor) -> torch.Tensor:
            if whole:
                return deltas_all[:, positions]
            return reader.sample(name, work, positions)

        state = method.prepare(name, info.numel,
                               lambda: (d for _, d in read_ahead(pool, blocks, read_block)),
                               job.weights, job.params, sample=sample)
    for rows, (base_block, stacked) in zip(blocks, read_ahead(pool, blocks, read_block)):
        merged = method.combine(Block(name, rows, base_block, stacked, job.weights, job.params,
                                      state, job.extras))
        try:
            if len(writers) == 1:
                writers[0].write(name, finish_block(name, merged, base_block, job.scales[0],
                                                    deltas_space))
            else:
                write_scaled(name, merged, base_block, job.scales, deltas_space, writers)
        except NonFiniteMerge:  # name the input that holds the NaN/inf (blocks were modified)
            base_again = reader.base(name, rows, info, work, "blame")  # not a read slot
            deltas = reader.stacked(name, rows, info, work, base_again, True, key="blame")
            raise MergeError(blame_non_finite(name, base_again, deltas, base_src, sources)) from None


# ----------------------------------------------------------------- the compiled methods' loop
#
# TIES and DARE run compiled kernels (`kernels.py`) that release the GIL, so a block's whole
# work (reading it, the threshold pass or the merge) runs in a worker thread, WORKERS blocks
# at a time, and the main thread only writes the merged blocks, in order: on two idle cores
# both compute. The kernels take the models' weights as read and the base (d = w - base in
# their loop) and write base + update: no subtraction or addition passes of their own. A
# tensor's threshold search (TIES) runs while the tensor before it merges. Blocks the
# kernels do not take (several update scales, a base interpolation) form the task vectors
# and go through the method's `combine`, with the same results. The kernels load in a
# thread of their own from the start of the merge; a worker reaching its first kernel call
# before that waits for them. Memory: IN_FLIGHT + 1 slots of block buffers (about
# 4(K + 3) MB each, fp32) and, for TIES, two whole-tensor buffers.

WORKERS = 2  # worker threads (the machines this runs on have few cores)
IN_FLIGHT = 4  # tasks submitted ahead of the one whose result the main thread handles


class Task:
    """One unit of the loop: `run(slot)` in a worker (slot: which reused buffers are its
    own), then `done(result, slot)` in the main thread, in stream order. Submitted only
    once `ready()` (which looks at what earlier `done` calls recorded)."""

    def __init__(self, run: Callable, done: Callable | None = None,
                 ready: Callable[[], bool] | None = None):
        self.run, self.done = run, done or (lambda result, slot: None)
        self.ready = ready or (lambda: True)


def run_in_order(pool: ThreadPoolExecutor, tasks: Iterator[Task], depth: int) -> None:
    """Run a lazy stream of tasks in `pool`, up to `depth` at a time, handing each result
    to its `done` in stream order; `depth` + 1 buffer slots rotate (a task's slot is free
    again once its `done` returned). An error stops the stream after the tasks in flight."""
    free = deque(range(depth + 1))
    pending: deque = deque()
    stream = iter(tasks)
    waiting: list = []  # the next task of the stream, not yet ready

    def top_up() -> None:
        while len(pending) < depth and free:
            if not waiting:
                task = next(stream, None)
                if task is None:
                    return
                waiting.append(task)
            if not waiting[0].ready():
                return
            task, slot = waiting.pop(), free.popleft()
            pending.append((task, slot, pool.submit(task.run, slot)))

    try:
        while True:
            top_up()
            if not pending:
                if waiting:  # nothing in flight can make it ready
                    raise RuntimeError("merge loop: a task waits on nothing in flight")
                return
            task, slot, future = pending.popleft()
            result = future.result()
            top_up()  # the workers go on while this result is handled
            task.done(result, slot)
            free.append(slot)
    finally:
        for _, _, future in pending:
            future.cancel() or future.exception()


def merge_tasks(job: MergeJob, reader: BlockReader, writers: list[ShardWriter],
                names: list[str]) -> Iterator[Task]:
    """Every tensor's tasks: its threshold search (TIES), then its blocks' merges; the
    next tensor's search is streamed before this tensor's merges, to run beside them."""
    shared = {"holders": {}, "scratch": {}}  # whole-tensor slot -> its tensor; slot -> dict
    tensors, wholes = [], 0
    for name in names:
        tensors.append(TensorTasks(name, job, reader, writers, shared, wholes % 2))
        wholes += tensors[-1].whole
    if tensors:
        yield from tensors[0].search_tasks()
    for i, tensor in enumerate(tensors):
        if i + 1 < len(tensors):
            yield from tensors[i + 1].search_tasks()
        yield from tensor.merge_tasks()


class TensorTasks:
    """The tasks of one tensor (see `merge_tasks`). TIES' threshold search: a tensor read
    whole (`reads_whole`) is read, sampled and searched in one task, into one of two
    alternating whole-tensor buffers; a larger one is sampled in one task, gathered block by
    block in as many, and its cuts found in one more."""

    def __init__(self, name: str, job: MergeJob, reader: BlockReader,
                 writers: list[ShardWriter], shared: dict, whole_slot: int):
        self.name, self.job, self.reader, self.writers = name, job, reader, writers
        self.shared, self.whole_slot = shared, whole_slot
        self.info = info = job.base_src.info(name)
        self.work = work_dtype(info)
        self.merged = merges(job, name)
        self.blocks = list(row_blocks(info, min(job.block_elements, CACHE_BLOCK_ELEMENTS)))
        self.whole = reads_whole(job, name)
        self.searches = self.merged and job.method.needs_prepare
        self.state = None  # TIES' cuts, once searched
        self.searched = not self.searches
        self.written = 0  # blocks written
        self.count = len(job.sources)
        self.raw_rows = reader.raw_rows()
        self.fused_finish = len(writers) == 1 and job.scales[0] is None
        self.density = float(job.params.get("density", 1.0))

    # --- the threshold search (TIES)

    def search_tasks(self) -> Iterator[Task]:
        if not self.searches:
            return
        if self.whole:
            holders = self.shared["holders"]
            previous = holders.get(self.whole_slot)  # done with the buffer once written
            holders[self.whole_slot] = self
            yield Task(self._search_whole, self._searched,
                       ready=lambda: previous is None or previous.finished())
            return
        if self.info.numel == 0 or self.density >= 1.0:  # every entry kept
            self._searched([sparse.MagnitudeCut(0.0, 0.0)] * self.count, None)
            return
        bounds: list = []
        above, parts = [], [[] for _ in range(self.count)]

        def gathered(result, slot):
            counts, offset, values = result
            above.append(counts)
            for k, v in enumerate(values):
                parts[k].append((offset, v))

        yield Task(lambda slot: self._bounds(), lambda result, slot: bounds.append(result))
        for rows in self.blocks:
            yield Task(lambda slot, rows=rows: self._gather(bounds[0], rows, slot), gathered,
                       ready=lambda: bool(bounds))
        yield Task(lambda slot: bounds[0].finish(sum(above), parts, self._delta_stream(slot)),
                   self._searched, ready=lambda: len(above) == len(self.blocks))

    def _bounds(self) -> sparse.CutSearch:
        return sparse.CutSearch.bounds(
            self.info.numel, self.count, self.density,
            lambda positions: self.reader.sample(self.name, self.work, positions))

    def _gather(self, search, rows, slot):
        base, stack = self._read(rows, slot)
        above = np.zeros(self.count, dtype=np.int64)
        values = self._gather_block(search, base, stack, above, slot)
        return above, flat_range(self.info, rows)[0], values

    def _gather_block(self, search, base, stack, above, slot):
        flat = stack.reshape(self.count, -1)
        if kernels.enabled(flat.numel()):
            return search.gather(flat, above, base=base.reshape(-1), raw=self.raw_rows,
                                 scratch=self.shared["scratch"].setdefault(slot, {}))
        return search.gather(self._deltas(base, stack, slot).reshape(self.count, -1), above)

    def _search_whole(self, slot):
        info, count = self.info, self.count
        s = self.whole_slot
        base = self.reader.base(self.name, None, info, self.work, f"whole{s}").view(-1)
        stack = self.reader.raw(self.name, None, info, self.work, f"whole_stack{s}"
                                ).view(count, -1)
        self.whole_data = (base, stack)

        def sample(positions):  # numpy's take: torch's advanced indexing cost 10x more
            at = positions.numpy()
            out = np.take(stack.numpy(), at, axis=1)
            below = base.numpy()[at]
            for k, raw in enumerate(self.raw_rows):
                if raw:
                    np.subtract(out[k], below, out=out[k])
            return torch.from_numpy(out)

        search = sparse.CutSearch.bounds(info.numel, count, self.density, sample)
        if search is None:
            return [sparse.MagnitudeCut(0.0, 0.0)] * count
        above = np.zeros(count, dtype=np.int64)
        parts = [[] for _ in range(count)]
        for rows in self.blocks:
            b, st = self._slice(rows)
            for k, v in enumerate(self._gather_block(search, b, st, above, slot)):
                parts[k].append((flat_range(info, rows)[0], v))
        return search.finish(above, parts, self._delta_stream(slot))

    def _searched(self, state, slot):
        self.state, self.searched = state, True

    def _delta_stream(self, slot):
        """A fresh pass over the tensor's task vectors (a bracket that missed)."""
        def stream():
            for rows in self.blocks:
                base, stack = self._read(rows, f"again{slot}")
                yield self._deltas(base, stack, f"again{slot}").reshape(self.count, -1)
        return stream

    # --- reading

    def _slice(self, rows):
        base, stack = self.whole_data
        (a, b), shape = flat_range(self.info, rows), block_shape(self.info, rows)
        return base[a:b].view(shape), stack[:, a:b].view(self.count, *shape)

    def _read(self, rows, slot):
        """(base, raw stack) of a block: read into the slot's buffers, or sliced from the
        tensor read whole."""
        if self.whole:
            return self._slice(rows)
        base = self.reader.base(self.name, rows, self.info, self.work, f"w{slot}")
        return base, self.reader.raw(self.name, rows, self.info, self.work, f"raw{slot}")

    def _deltas(self, base, stack, slot):
        """The task vectors of a raw stack: in place in a slot's own buffer, else (a slice
        of a tensor read whole) into the slot's scratch."""
        out = stack
        if self.whole:
            out = self.reader._buffer(f"deltas{slot}", stack.numel(), stack.dtype
                                      ).view(stack.shape)
        for k, raw in enumerate(self.raw_rows):
            if raw:
                torch.sub(stack[k], base, out=out[k])
            elif out is not stack:
                out[k].copy_(stack[k])
        return out

    # --- merging

    def finished(self) -> bool:
        return self.written == len(self.blocks)

    def merge_tasks(self) -> Iterator[Task]:
        for rows in self.blocks:
            if not self.merged:
                yield Task(lambda slot, rows=rows: self.job.base_src.read(self.name, rows),
                           self._write)
                continue
            yield Task(lambda slot, rows=rows: self._merge(rows, slot), self._write,
                       ready=lambda: self.searched)

    def _merge(self, rows, slot):
        job, method = self.job, self.job.method
        base, stack = self._read(rows, slot)
        block = Block(self.name, rows, base, stack, job.weights, job.params, self.state,
                      job.extras)
        if self.fused_finish:
            out = self.reader._buffer(f"out{slot}", base.numel(), self.work).view(base.shape)
            bad = method.finished(block, self.raw_rows, out)
            if bad is not None:
                if bad:
                    self._blame(rows, slot)
                return out
        block.tensors = self._deltas(base, stack, slot)
        merged = method.combine(block)
        if self.fused_finish:
            try:
                return finish_block(self.name, merged, base, None, True)
            except NonFiniteMerge:
                self._blame(rows, slot)
        return merged, base

    def _write(self, result, slot):
        try:
            if isinstance(result, tuple):
                write_scaled(self.name, *result, self.job.scales, True, self.writers)
            else:
                for writer in self.writers:
                    writer.write(self.name, result)
        except NonFiniteMerge:
            self._blame(self.blocks[self.written], slot)
        self.written += 1

    def _blame(self, rows, slot):
        """Name the input holding the NaN/inf (the blocks were modified: read them again)."""
        info, work = self.info, self.work
        base = self.reader.base(self.name, rows, info, work, f"blame{slot}")
        deltas = self.reader.stacked(self.name, rows, info, work, base, True, f"blame_s{slot}")
        raise MergeError(blame_non_finite(self.name, base, deltas, self.job.base_src,
                                          self.job.sources)) from None


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
