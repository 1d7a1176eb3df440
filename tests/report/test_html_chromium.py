"""report.html opens in headless Chromium with every plot decoded.

Chromium comes from Debian's `chromium` package (scripts/ensure-chromium.sh installs it);
the test skips, saying so, only when no chromium binary is on PATH.
"""

import re
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest

from dtmerge.report import write_report
from dtmerge.rundir import RunDir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not on PATH: run scripts/ensure-chromium.sh (apt-get install chromium)")

# Reads back, after load, each image's decoded size: 0x0 means a broken data URI.
PROBE = ("<script>window.addEventListener('load',()=>{document.body.setAttribute('data-probe',"
         "[...document.images].map(i=>i.naturalWidth+'x'+i.naturalHeight).join(','))});</script>")


def _chromium(tmp_path, *args, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def test_report_renders_with_its_plots(run_root, tmp_path):
    html = RunDir(run_root).report_dir / "report.html"
    write_report(RunDir(run_root), n_boot=200)
    # the HTML must render from a directory holding nothing else (no plots/ beside it)
    alone = tmp_path / "alone"
    alone.mkdir()
    page = alone / "report.html"
    page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))

    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Alignment-tax report" in dom.stdout
    probe = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert probe, "the page's load event never ran"
    sizes = [tuple(map(int, s.split("x"))) for s in probe.group(1).split(",")]
    assert len(sizes) == 3 and all(w > 300 and h > 200 for w, h in sizes), sizes

    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", html.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page
    # a plot's colours (not only black text on white) are on screen
    coloured = np.abs(pixels - pixels.mean(axis=-1, keepdims=True)).max(axis=-1) > 0.2
    assert coloured.mean() > 0.002


# Reads back, after load, the first section's heading and text as the browser lays them out.
ANSWER_PROBE = ("<script>window.addEventListener('load',()=>{const s=document.querySelector('section');"
                "const r=s.getBoundingClientRect();document.body.setAttribute('data-answer',"
                "s.querySelector('h2').innerText+'|'+Math.round(r.top)+'|'+Math.round(r.height)+'|'"
                "+s.innerText.replace(/[\"<>&|]/g,' '))});</script>")


def _answer_in_browser(run: RunDir, tmp_path) -> tuple[str, int, int, str]:
    """(first section's title, its top and height in pixels, its text) as Chromium lays it out."""
    html = run.report_dir / "report.html"
    page = tmp_path / "report.html"
    page.write_text(html.read_text().replace("</body>", ANSWER_PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    probe = re.search(r'data-answer="([^"]*)"', dom.stdout)
    assert probe, "the page's load event never ran"
    title, top, height, text = probe.group(1).split("|", 3)
    return title, int(top), int(height), text


def test_answer_block_is_the_first_thing_a_reader_sees(run_root, tmp_path):
    write_report(RunDir(run_root), n_boot=200)
    html = RunDir(run_root).report_dir / "report.html"
    title, top, height, text = _answer_in_browser(RunDir(run_root), tmp_path)
    assert title == "Answer"
    assert top < 200 and height > 50  # rendered at the top of the page, not hidden
    assert "dtm beats SFT on" in text and "[+" in text and "Ship " in text
    shot = tmp_path / "answer.png"
    res = _chromium(tmp_path, "--window-size=1200,700", f"--screenshot={shot}", html.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    dark = (pixels.mean(axis=-1) < 0.5).mean()
    assert dark > 0.01  # the first screen holds text (the Answer), not an empty page


def test_answer_block_of_a_loss_only_run(tmp_path):
    """A Gemma-like run (accuracies flat, held-out loss moving): the Answer states the
    forgetting comparison in loss, in the browser too."""
    from test_answer import loss_run

    run = loss_run(tmp_path / "gemma-like")
    write_report(run, n_boot=200)
    title, top, height, text = _answer_in_browser(run, tmp_path)
    assert title == "Answer" and top < 200
    assert "heldout bits per byte" in text and "(within noise)" in text
    assert "dtm does not beat training less on loss on heldout" in text
