"""Held-out English prose found on this machine: the language-modelling forgetting measure.

A model that keeps its pre-training knowledge keeps predicting ordinary English text well;
instruction tuning that damages general language modelling raises its loss on such text. The
passages come from files that exist offline (no download), read at build time and never
stored in the repository:

    python-stdlib  docstrings of Python standard-library modules (present wherever dtmerge runs)
    licenses       /usr/share/common-licenses/* (Debian and Ubuntu)
    package-docs   /usr/share/doc/*/README* (plain or gzip), where a distribution keeps them

Paragraphs pass a prose filter (enough plain words, sentence punctuation, almost no code or
markup), duplicates are dropped, consecutive paragraphs of one file are joined into passages
of bounded length, and a seeded shuffle picks passages round-robin across the source kinds
until a word budget is reached. A root that is missing is skipped and recorded, so the task
builds on any machine; on a given machine the selection is deterministic. None of this text is
in the instruction data, which is generated from word lists (see `instructions.py`).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import random
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dtmerge.demo.realdata.text import module_docstrings

LICENSES_DIR = Path("/usr/share/common-licenses")
PACKAGE_DOCS_DIR = Path("/usr/share/doc")
STDLIB_MODULES = [
    "abc", "argparse", "asyncio", "base64", "bisect", "calendar", "codecs", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fnmatch", "fractions", "functools", "getopt",
    "gettext", "glob", "gzip", "heapq", "hmac", "html", "http", "importlib", "inspect", "io",
    "ipaddress", "itertools", "json", "locale", "logging", "mailbox", "mimetypes", "operator",
    "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "zipfile",
]
SOURCE_KINDS = ("python-stdlib", "licenses", "package-docs")
MAX_FILE_BYTES = 1 << 20
_CODE_CHARS = set("{}[]<>=_\\|#$@*`~^")
_PLAIN_WORD = re.compile(r"^[\"'(]?[A-Za-z][A-Za-z'-]*[.,;:!?\"')]*$")


@dataclass(frozen=True)
class Passage:
    """One document of the task: prose from one file, with where it came from."""

    text: str
    source: str  # one of SOURCE_KINDS
    origin: str  # file path, or "python:<module>"
    origin_sha256: str  # of the file's bytes, so a reader can check what was read
    words: int
    bytes: int


@dataclass(frozen=True)
class HeldoutSelection:
    passages: list[Passage]
    provenance: dict
    # Candidate passages from files none of whose text is scored: general text for the replay
    # and ewc recipes that never shares a source file with the scored passages.
    general: list[Passage] = field(default_factory=list)


def is_prose(paragraph: str) -> bool:
    """True for a paragraph of running English: >= 12 words, >= 85% plain words, ends like a
    sentence, and under 1% code or markup characters."""
    words = paragraph.split()
    if len(words) < 12 or not paragraph.rstrip("\"')").endswith((".", "!", "?")):
        return False
    plain = sum(1 for w in words if _PLAIN_WORD.match(w))
    code = sum(1 for c in paragraph if c in _CODE_CHARS)
    return plain >= 0.85 * len(words) and code <= 0.01 * len(paragraph)


def prose_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of `text` (blank-line separated), each on one line."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        para = " ".join(block.split())
        if para and is_prose(para):
            out.append(para)
    return out


def _passages(paragraphs: list[str], max_words: int, min_words: int) -> list[str]:
    """Consecutive paragraphs joined into passages of min_words..max_words words."""
    out, current, count = [], [], 0
    for para in paragraphs:
        n = len(para.split())
        if n > max_words:
            continue  # one giant paragraph is usually a mangled list, not prose
        if current and count + n > max_words:
            if count >= min_words:
                out.append("\n\n".join(current))
            current, count = [], 0
        current.append(para)
        count += n
    if current and count >= min_words:
        out.append("\n\n".join(current))
    return out


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sources(kind: str, paths: list[Path]) -> list[tuple[str, str, str, str]]:
    """(kind, origin, sha256, text) for every readable file, by resolved path (no duplicates
    through symlinks such as common-licenses/GPL -> GPL-3)."""
    seen, out = set(), []
    for path in paths:
        real = path.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        text = _read_text(real)
        if text is not None:
            out.append((kind, str(path), _sha256(real.read_bytes()), text))
    return out


def _stdlib_sources(modules: list[str]) -> list[tuple[str, str, str, str]]:
    out = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        text = "\n\n".join(d for d in module_docstrings(module, own_only=True) if d)
        file = getattr(module, "__file__", None)
        digest = _sha256(Path(file).read_bytes()) if file and Path(file).is_file() else ""
        out.append(("python-stdlib", f"python:{name}", digest, text))
    return out


def collect_sources(licenses_dir: Path = LICENSES_DIR, package_docs_dir: Path = PACKAGE_DOCS_DIR,
                    modules: list[str] = STDLIB_MODULES) -> tuple[list[tuple], list[str]]:
    """Every candidate text on this machine and the roots that were missing."""
    missing = [str(d) for d in (licenses_dir, package_docs_dir) if not Path(d).is_dir()]
    sources = _stdlib_sources(modules)
    if Path(licenses_dir).is_dir():
        sources += _file_sources("licenses", sorted(Path(licenses_dir).iterdir()))
    if Path(package_docs_dir).is_dir():
        sources += _file_sources("package-docs", sorted(Path(package_docs_dir).glob("*/README*")))
    return sources, missing


def select_heldout(seed: int = 0, word_budget: int = 18000, max_docs: int = 48,
                   max_words: int = 400, min_words: int = 120, per_file: int = 2,
                   licenses_dir: Path = LICENSES_DIR, package_docs_dir: Path = PACKAGE_DOCS_DIR,
                   modules: list[str] = STDLIB_MODULES) -> HeldoutSelection:
    """Pick the task's passages.

    Args:
        seed: seed of the shuffle that picks passages.
        word_budget: stop once the passages hold this many words (~1.3 Gemma tokens a word).
        max_docs: at most this many passages (kept under eval.limit so no passage is cut).
        max_words, min_words: passage length bounds.
        per_file: at most this many passages from one file, so no single text dominates.
        licenses_dir, package_docs_dir, modules: where to look (missing roots are skipped).

    Returns:
        The passages and a provenance record (roots, skips, counts per source, totals).
    """
    sources, missing = collect_sources(licenses_dir, package_docs_dir, modules)
    rng = random.Random(seed)
    seen_paragraphs: set[str] = set()
    by_kind: dict[str, list[Passage]] = {k: [] for k in SOURCE_KINDS}
    for kind, origin, digest, text in sources:
        fresh = []
        for para in prose_paragraphs(text):
            key = " ".join(para.lower().split())
            if key not in seen_paragraphs:
                seen_paragraphs.add(key)
                fresh.append(para)
        chunks = _passages(fresh, max_words, min_words)
        for chunk in rng.sample(chunks, min(per_file, len(chunks))):
            by_kind[kind].append(Passage(chunk, kind, origin, digest, len(chunk.split()),
                                         len(chunk.encode("utf-8"))))
    for kind in SOURCE_KINDS:
        rng.shuffle(by_kind[kind])
    chosen: list[Passage] = []
    words = 0
    queues = [list(by_kind[k]) for k in SOURCE_KINDS]
    while words < word_budget and len(chosen) < max_docs and any(queues):
        for queue in queues:
            if queue and words < word_budget and len(chosen) < max_docs:
                p = queue.pop(0)
                chosen.append(p)
                words += p.words
    provenance = {
        "seed": seed, "word_budget": word_budget, "max_docs": max_docs,
        "python": sys.version.split()[0],
        "roots": {"licenses": str(licenses_dir), "package-docs": str(package_docs_dir),
                  "python-stdlib": f"{len(modules)} modules"},
        "missing_roots": missing,
        "candidates": {k: len(v) for k, v in by_kind.items()},
        "docs": len(chosen), "words": words, "bytes": sum(p.bytes for p in chosen),
        "by_source": {k: sum(1 for p in chosen if p.source == k) for k in SOURCE_KINDS},
        "origins": sorted({p.origin for p in chosen}),
    }
    scored = {p.origin for p in chosen}
    general = [p for queue in queues for p in queue if p.origin not in scored]
    return HeldoutSelection(chosen, provenance, general)


def passage_record(p: Passage) -> dict:
    return asdict(p)
