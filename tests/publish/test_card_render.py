"""The model card renders as Markdown in a real browser (headless chromium): the tax table is
an HTML table with the report's intervals, and the screenshot is not blank."""

import json

import numpy as np
import pytest

from card_render import CHROMIUM, card_html, chromium, screenshot

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not on PATH: run scripts/ensure-chromium.sh")


def test_card_renders_with_its_tax_table(published_run, tmp_path):
    pytest.importorskip("markdown_it", reason="markdown-it-py renders the card's Markdown")
    import matplotlib.image as mpimg

    from dtmerge.publish.card import card_text
    from dtmerge.rundir import RunDir

    run = RunDir(published_run)
    text = card_text(run, "dtm", run.model("dtm"))
    page = tmp_path / "card.html"
    page.write_text(card_html(text))
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    report = json.loads((published_run / "report" / "report.json").read_text())
    d = report["tax_intervals"]["facts"]["dtm"]
    assert "<th>dtm − base [95%]</th>" in dom.stdout
    assert f"<td>{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" in dom.stdout
    assert "model-index:" in dom.stdout and "<h2>Alignment tax</h2>" in dom.stdout

    shot = screenshot(text, tmp_path / "card.png", tmp_path)
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # text and table borders on screen, not a blank page
