"""The compiled methods' merge loop (blocks in worker threads, the base subtraction and the
final base + update inside the kernels) gives the same bits as the engine's block loop with
separate passes, and its task runner keeps order, readiness and errors."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from dtmerge.merge import merge_models
from dtmerge.merge.engine import Task, run_in_order
from dtmerge.merge.methods import kernels, sparse
from dtmerge.merge.methods.sparse import DareLinear, Ties

from merge_zoo import load_dir

pytest.importorskip("numba")

CASES = [("ties", {"density": 0.3}),
         ("ties", {"density": 0.5, "majority_sign": "frequency", "scaling": 0.7}),
         ("dare_linear", {"density": 0.4, "seed": 3}),
         ("dare_linear", {"density": 0.6, "seed": 1, "normalize": False, "scaling": 1.3}),
         ("dare_ties", {"density": 0.6, "majority_sign": "frequency"})]


@pytest.fixture
def loaded(monkeypatch):
    """Every block, however small, through the compiled kernels, loaded before the merge."""
    monkeypatch.setattr(kernels, "MIN_VALUES", 0)
    monkeypatch.delenv("DTM_MERGE_KERNELS", raising=False)
    kernels.warm((torch.float32,))


@pytest.mark.parametrize("which", ["full", "lora", "mixed"])
@pytest.mark.parametrize("method,params", CASES)
def test_the_threaded_fused_loop_equals_the_block_loop(zoo, tmp_path, monkeypatch, loaded,
                                                       which, method, params):
    """Uneven small blocks, some tensors read whole and some streamed, weights that differ:
    the worker-thread loop with fused kernels against the read-ahead loop running the
    methods' `combine` on task vectors (the engine's loop before the fused kernels)."""
    inputs = {"full": zoo["full"], "lora": zoo["lora"],
              "mixed": [zoo["full"][0], zoo["lora"][1], zoo["full"][2]]}[which]
    fused = []
    for cls in (Ties, DareLinear):
        real = cls.finished
        monkeypatch.setattr(cls, "finished", lambda self, *a, real=real: fused.append(
            result := real(self, *a)) or result)
    kw = dict(method=method, params=params, weights=[0.5, 0.2, 0.3], block_elements=700)
    merge_models(zoo["base"], inputs, tmp_path / "threaded", **kw)
    with monkeypatch.context() as m:
        for cls in (sparse.Ties, sparse.DareLinear, sparse.DareTies):
            m.setattr(cls, "compiled", False)  # the read-ahead block loop
        merge_models(zoo["base"], inputs, tmp_path / "blocks", **kw)
    threaded, blocks = load_dir(tmp_path / "threaded"), load_dir(tmp_path / "blocks")
    assert threaded.keys() == blocks.keys()
    assert all(torch.equal(threaded[n], blocks[n]) for n in blocks)
    if method != "dare_ties":  # its blocks go through `combine`
        assert any(r is not None for r in fused)  # the fused kernels did run


@pytest.mark.parametrize("method,params", CASES[:3])
def test_a_merge_started_while_the_kernels_load_waits_for_them(zoo, tmp_path, monkeypatch,
                                                               method, params):
    """A merge whose kernels are still loading runs no block before they are loaded (none
    through the eager operators), and gives the bits of a merge with them loaded."""
    monkeypatch.setattr(kernels, "MIN_VALUES", 0)
    monkeypatch.delenv("DTM_MERGE_KERNELS", raising=False)
    kw = dict(method=method, params=params, block_elements=700)
    kernels.warm((torch.float32,))
    merge_models(zoo["base"], zoo["full"], tmp_path / "loaded", **kw)
    release = threading.Event()
    real_warm = kernels.warm
    monkeypatch.setattr(kernels, "_warmed", set())
    monkeypatch.setattr(kernels, "warm", lambda dtypes: release.wait(5) and real_warm(dtypes))
    eager = []
    for name in ("sign_consensus_merge_", "dare_weighted_sum", "gather_block"):
        real = getattr(sparse, name)
        monkeypatch.setattr(sparse, name, lambda *a, real=real, **k: eager.append(1) or
                            real(*a, **k))
    threading.Timer(0.3, release.set).start()  # loaded 0.3 s into the merge
    merge_models(zoo["base"], zoo["full"], tmp_path / "waited", **kw)
    assert release.is_set() and not eager
    loaded, waited = load_dir(tmp_path / "loaded"), load_dir(tmp_path / "waited")
    assert all(torch.equal(loaded[n], waited[n]) for n in loaded)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scaling", [1.0, 0.7])
def test_kernels_take_weights_and_add_the_base_as_the_separate_passes(dtype, scaling):
    """Rows of weights (raw) and of task vectors mixed, NaN and signed zeros included."""
    torch.manual_seed(0)
    base = torch.randn(3000, dtype=dtype)
    deltas = torch.randn(4, 3000, dtype=dtype) * 0.1
    deltas[:, :50] = 0.0
    deltas[2, 60] = -0.0
    deltas[1, 70] = float("nan")
    raw = [True, False, True, True]
    stack = deltas.clone()
    for k in range(4):
        if raw[k]:
            stack[k] = deltas[k] + base
    deltas = torch.stack([stack[k] - base if raw[k] else stack[k] for k in range(4)])
    cuts = [0.05, 0.1, -1.0, 0.02]
    w = torch.tensor([0.4, 0.3, 0.2, 0.1]).to(dtype).tolist()
    merged, bad = kernels.ties_merge(deltas.clone(), cuts, w, True, False)
    expected = base + sparse.scaled_(merged, scaling)
    out = torch.empty(3000, dtype=dtype)
    got, bad = kernels.ties_merge(stack, cuts, w, True, False, scaling=scaling, base=base,
                                  raw=raw, out=out)
    assert got.data_ptr() == out.data_ptr() and bad == 1
    assert torch.equal(got.nan_to_num(7.0), expected.nan_to_num(7.0))
    keys = np.array([sparse.mask_key(2, "t", k) for k in range(4)], dtype=np.uint64)
    summed, _ = kernels.dare_sum(deltas, keys, 500, sparse.keep_threshold(0.4), w)
    got, bad = kernels.dare_sum(stack, keys, 500, sparse.keep_threshold(0.4), w, base=base,
                                raw=raw, out=out)
    assert bad == np.count_nonzero(~torch.isfinite(base + summed).numpy())
    assert torch.equal(got.nan_to_num(7.0), (base + summed).nan_to_num(7.0))
    absd = deltas.abs().double().numpy()
    lo, hi = np.quantile(absd, 0.3, axis=1), np.quantile(absd, 0.6, axis=1)
    gatherer = kernels.BracketGatherer(lo, hi)
    above_raw, above = np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64)
    from_raw = gatherer(stack, above_raw, base=base, raw=raw, scratch={})
    from_deltas = gatherer(deltas, above)
    assert np.array_equal(above_raw, above)
    assert all(np.array_equal(a, b) for a, b in zip(from_raw, from_deltas))


def test_run_in_order_hands_results_over_in_order_and_waits_for_readiness():
    done, flags = [], {"ready": False}

    def slow(i):
        return lambda slot: time.sleep(0.002 * (5 - i % 5)) or (i, slot)

    def record(result, slot):
        done.append(result[0])
        if result[0] == 3:
            flags["ready"] = True

    def tasks():
        for i in range(4):
            yield Task(slow(i), record)
        # submitted only once task 3's result was handled
        yield Task(lambda slot: flags["ready"], lambda result, slot: done.append(result),
                   ready=lambda: flags["ready"])
        for i in range(5, 12):
            yield Task(slow(i), record)

    with ThreadPoolExecutor(2) as pool:
        run_in_order(pool, tasks(), 3)
    assert done == [0, 1, 2, 3, True, *range(5, 12)]


def test_run_in_order_gives_every_slot_to_one_task_at_a_time():
    owners: dict = {}
    lock = threading.Lock()

    def run(i):
        def body(slot):
            with lock:
                assert slot not in owners
                owners[slot] = i
            time.sleep(0.001)
            return i
        return body

    def done(i, slot):
        with lock:
            assert owners.pop(slot) == i

    with ThreadPoolExecutor(2) as pool:
        run_in_order(pool, (Task(run(i), done) for i in range(30)), 4)
    assert not owners


def test_run_in_order_passes_errors_on_after_the_tasks_in_flight():
    finished = []

    def run(i):
        def body(slot):
            if i == 4:
                raise OSError("disk gone")
            time.sleep(0.002)
            finished.append(i)
            return i
        return body

    with ThreadPoolExecutor(2) as pool:
        with pytest.raises(OSError, match="disk gone"):
            run_in_order(pool, (Task(run(i)) for i in range(20)), 3)
        in_flight = list(finished)
    assert finished == in_flight  # nothing still running once the error surfaced
    assert max(finished) < 10


@pytest.fixture
def gated_load(monkeypatch) -> threading.Event:
    """Kernels loading in the background, held until the returned event is set."""
    monkeypatch.delenv("DTM_MERGE_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_warmed", set())
    release = threading.Event()
    real = kernels.warm
    monkeypatch.setattr(kernels, "warm", lambda dtypes: release.wait(5) and real(dtypes))
    kernels.load_in_background((torch.float32,))
    return release


def test_kernels_wait_while_loading_in_the_background(gated_load):
    release = gated_load
    answers = []
    asking = threading.Thread(target=lambda: answers.append(kernels.enabled(1 << 20)))
    asking.start()
    asking.join(0.3)
    assert asking.is_alive() and not answers  # waits for the load
    assert not kernels.enabled(kernels.MIN_VALUES - 1)  # a small stack never waits
    release.set()
    asking.join(5)
    assert answers == [True]
    assert kernels.enabled(1 << 20)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_while_the_kernels_load_does_not_wait_for_them(gated_load):
    """The loading thread is not in a forked child: there `enabled` must not wait for it."""
    release = gated_load
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 1 unless `enabled` answers within 5 s
            signal.alarm(5)
            os._exit(0 if kernels.enabled(1 << 20) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
