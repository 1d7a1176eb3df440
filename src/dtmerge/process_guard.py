"""Process-level safety of a run: one process per run directory, cleanup after killed
processes, and the fault-injection hook the fault suite kills runs with.

The run lock is flock(2) on `runs/NAME/.lock`: the kernel releases it when the holder dies,
however it dies, so there is never a stale lock to detect or break.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Iterator

from dtmerge.errors import DtmError


def fault_point(label: str) -> None:
    """Test hook of the fault-injection suite: SIGKILL this process at the Nth point reached.

    With DTM_FAULT_KILL_AT=N set, the Nth call in this process kills it (no cleanup runs, as
    with a power cut); with DTM_FAULT_TRACE=FILE every label is appended there. Unset (the
    normal case) it costs one dictionary lookup.
    """
    at = os.environ.get("DTM_FAULT_KILL_AT")
    trace = os.environ.get("DTM_FAULT_TRACE")
    if not at and not trace:
        return
    if _FAULTS.get("pid") != os.getpid():  # a forked child counts from zero
        _FAULTS.update(pid=os.getpid(), n=0)
    _FAULTS["n"] += 1
    if trace:
        with open(trace, "a") as fh:
            fh.write(f"{_FAULTS['n']} {label}\n")
    if at and _FAULTS["n"] == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULTS: dict[str, int] = {}


def remove_dead_temporaries(folder: Path, prefix: str) -> list[Path]:
    """Delete the `<prefix><pid>-...` scratch folders in `folder` whose process is gone (a
    SIGKILL skips every cleanup); those of live processes are left alone."""
    removed = []
    for p in Path(folder).glob(f"{prefix}*"):
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _process_alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@contextlib.contextmanager
def run_lock(root: Path | str) -> Iterator[None]:
    """Hold the run directory's exclusive lock for the block; fail at once if another process
    holds it, naming that process.

    flock(2) on `root/.lock`: the kernel drops the lock when its holder dies, however it dies,
    so a killed run never leaves a stale lock behind. Re-entrant within one process. (flock is
    not reliable on some network file systems, e.g. old NFS: keep run directories local there.)
    """
    root = Path(root).resolve()
    if root in _HELD_LOCKS:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = path.read_text().strip() or "a process that has not written its id yet"
        os.close(fd)
        raise DtmError(f"{root} is in use by another dtm process ({holder}); wait for it to "
                       "finish or stop it (two runs in one directory would overwrite each "
                       "other's models)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    _HELD_LOCKS.add(root)
    try:
        yield
    finally:
        _HELD_LOCKS.discard(root)
        os.close(fd)  # releases the lock


_HELD_LOCKS: set[Path] = set()
