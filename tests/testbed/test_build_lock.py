"""Two demos started at once build the testbed once: the second waits, then reuses it."""

import subprocess
import sys

import pytest

BUILD = ("import sys; from dtmerge.demo.testbed.build import build_testbed; "
         "t = build_testbed(0, 'tiny', sys.argv[1], log=lambda m: print(m, flush=True)); "
         "print('data', t.data.is_file())")


@pytest.mark.slow
def test_concurrent_builds_share_one_cache_entry(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("data True" in o for o in outs), outs
    built = [o for o in outs if "testbed: built in" in o]
    assert len(built) == 1, outs  # the other one reused it
