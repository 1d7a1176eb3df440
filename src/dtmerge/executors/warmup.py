"""Processes dtmerge owns (`dtm` itself, the pool's fork server, Ray workers): which modules
they preload for jobs, and the garbage collector settings they run them with."""

from __future__ import annotations

import functools

_PROCESS_CLAIMED = False  # see claim_process


def claim_process() -> None:
    """Mark this process as dtmerge's own from start to exit (the `dtm` command does, first):
    jobs run in it then get the collector settings of the pool's fork server and Ray workers
    (`warm_up_worker`). A caller's process (a notebook, a script or test calling
    `run_pipeline`) is never claimed, and keeps its collector as it is."""
    global _PROCESS_CLAIMED
    _PROCESS_CLAIMED = True


def process_claimed() -> bool:
    return _PROCESS_CLAIMED


# Imported once by the fork server (through `dtmerge.pool_preload`); pool workers are forked
# from it with these loaded. The modules the jobs import, not just the packages: transformers,
# TRL and lm-eval load their parts lazily, so a worker forked after `import trl, lm_eval` still
# spent 1.2 s here importing SFTTrainer, lm-eval's HF model and dtmerge's job modules.
JOB_MODULES = ["torch", "transformers", "peft", "trl", "trl.trainer.sft_trainer", "lm_eval",
               "lm_eval.evaluator", "lm_eval.models.huggingface", "dtmerge.train.trainer",
               "dtmerge.train.job", "dtmerge.evaluate.harness", "dtmerge.evaluate.stage"]


@functools.cache  # once per process
def warm_up_worker() -> None:
    """Preload JOB_MODULES in a process dtmerge owns (the pool's fork server, a Ray worker),
    once, with CPython's settings for long-lived processes that fork or run many jobs.

    No cyclic collections while the preload creates its ~480k long-lived objects (1,273
    collections, 1.3 s of an 8 s preload here), then freeze them out of the collector's view:
    a full collection in a job (accelerate runs one at the start of every training job) then
    skips them (0.4 s each here, ~0.01 s frozen), and a forked worker does not write to the
    pages it shares with the server. No collection before the freeze: it took 0.45 s to free
    ~100 objects. Also run before the first job placed in `dtm`'s own process
    (`claim_process`): without it, a sequential run of four tiny jobs spent ~3 s in 12 full
    collections. Never in a caller's process (a notebook): a frozen heap there would keep
    the user's own objects, freed later in cycles, forever.
    """
    import gc

    gc.disable()
    try:
        preload_job_modules()
        gc.freeze()
    finally:
        gc.enable()  # forked workers inherit the setting


def preload_job_modules() -> None:
    """Import JOB_MODULES, skipping any that fails: the server must survive a broken optional
    library (multiprocessing's own preload stops the server at any error but ImportError);
    the job that needs the module imports it again and reports the error itself."""
    import importlib

    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - see the docstring
            pass
