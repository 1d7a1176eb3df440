"""Imported by the process pool's fork server: loads what pool jobs import, so that workers
forked from it start with it loaded (see `dtmerge.executors.warmup.warm_up_worker`)."""

from dtmerge.executors.warmup import warm_up_worker

warm_up_worker()
