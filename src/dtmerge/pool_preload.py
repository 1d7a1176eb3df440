"""Imported by the process pool's fork server: loads what pool jobs import, so that workers
forked from it start with it loaded (see `dtmerge.executors.preload_job_modules`)."""

import gc

# CPython's advice for a process that forks without exec: no cyclic collections while the
# preload creates its ~480k long-lived objects (1.3 s of the 8 s preload here, on the path of
# the first job), then freeze them out of the collector's view, so that a full collection in a
# worker does not walk them again or write to the pages the fork shared: accelerate runs one at
# the start of every training job (0.4 s each here, ~0.01 s once frozen). Freezing without a
# collection first: it would take 0.45 s to free ~100 objects.
gc.disable()
try:
    from dtmerge.executors import preload_job_modules

    preload_job_modules()
    gc.freeze()
finally:
    gc.enable()  # workers inherit the setting
