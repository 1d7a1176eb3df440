"""Render a model card as the Hub shows it (Markdown with tables, the YAML header as a block)
to HTML, and take a headless chromium screenshot of it.

    .venv/bin/python tests/publish/card_render.py DIR/README.md docs/model-card.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:24px auto;color:#111}"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "font-size:14px}th{background:#f3f4f6}pre{background:#f6f8fa;padding:8px;overflow:auto;"
         "font-size:12px;max-height:360px}.meta{border:1px solid #d0d7de;border-radius:6px}")


def card_html(card_text: str) -> str:
    from huggingface_hub import ModelCard
    from markdown_it import MarkdownIt

    card = ModelCard(card_text)
    body = MarkdownIt("commonmark").enable("table").render(card.text)
    meta = card.data.to_yaml().replace("&", "&amp;").replace("<", "&lt;")
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style></head>"
            f"<body><pre class='meta'>{meta}</pre>{body}</body></html>")


def chromium(profile: Path, *args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True,
                          timeout=timeout)


def screenshot(card_text: str, png: Path, work: Path, size: str = "1200,2200") -> Path:
    page = work / "card.html"
    page.write_text(card_html(card_text))
    res = chromium(work / "chromium-profile", f"--window-size={size}", f"--screenshot={png}",
                   page.as_uri())
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(res.stderr[-2000:])
    return png


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        print(screenshot(Path(sys.argv[1]).read_text(), Path(sys.argv[2]).resolve(), Path(work)))
