"""Imported by the process pool's fork server: loads what pool jobs import, so that workers
forked from it start with it loaded (see `dtmerge.executors.preload_job_modules`)."""

from dtmerge.executors import preload_job_modules

preload_job_modules()
