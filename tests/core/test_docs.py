"""README.md and docs/*.md stay true: every `dtm ...` command they quote parses with dtm's own
parser and sets only keys the config has, every dotted config key and YAML snippet names keys of
the schema, every relative link resolves, the configuration page is what the schema generates,
and the README stays a short front page."""

import re
import runpy
from pathlib import Path

import pytest
from doc_quotes import is_config_key, override_keys, parse_dtm, quoted, yaml_keys

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "BENCHMARKS.md"]
# Written alongside by the work on the decision rule; linked from here before it lands.
PENDING = {ROOT / "docs" / "decision.md"}
# Dotted names that look like config keys but are paths into report/report.json.
NOT_CONFIG_KEYS = {"answer.decision", "answer.confirmation", "report.json"}  # file paths
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _ids(p):
    return str(p.relative_to(ROOT))


def test_readme_is_a_short_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "make demo" in text and "make test" in text
    assert "docs/decision.md" in text


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_quoted_commands_parse_and_set_known_keys(page):
    commands, _, _ = quoted(page.read_text())
    for command in commands:
        args = parse_dtm(command, prose=True)
        unknown = [k for k in override_keys(args) if not is_config_key(k)] if args else []
        assert not unknown, f"{page.name}: {command!r} sets keys the config does not have: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_quoted_config_keys_exist(page):
    _, keys, yamls = quoted(page.read_text())
    keys += [k for snippet in yamls for k in yaml_keys(snippet)]
    unknown = sorted({k for k in keys if not is_config_key(k)} - NOT_CONFIG_KEYS)
    assert not unknown, f"{page.name} quotes config keys the schema does not have: {unknown}"


def test_the_checks_see_commands_and_keys():
    commands, keys, yamls = quoted((ROOT / "README.md").read_text())
    assert any(c.startswith("dtm run configs/example.yaml --dry-run") for c in commands)
    assert "eval.limit" in keys and yamls
    bad = "`dtm run c.yaml train.learnin_rate=1` and `eval.limt`"
    commands, keys, _ = quoted(bad)
    assert override_keys(parse_dtm(commands[0])) == ["train.learnin_rate"]
    assert not is_config_key("train.learnin_rate") and not is_config_key(keys[0])
    assert yaml_keys("eval: {tasks: [x], limt: 3}\nmonitor: {enabled: true}") == [
        "eval", "eval.tasks", "eval.limt", "monitor", "monitor.enabled"]


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if dest in PENDING:
            continue
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links that do not resolve: {broken}"


def test_configuration_page_is_generated_from_the_schema():
    generator = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text() == generator["render"](), \
        "docs/configuration.md is out of date: run python scripts/config_reference.py"
    assert "`train.learning_rate`" in page.read_text()


def test_benchmarks_hold_results_not_working_notes():
    text = (ROOT / "BENCHMARKS.md").read_text()
    for word in ("engineer", "issue ", "session", "superseded", "previous"):
        assert word not in text.lower(), f"BENCHMARKS.md mentions {word!r}"
    sections = [s for s in text.split("\n## ")[1:]]
    assert sections
    for section in sections:
        title = section.splitlines()[0]
        assert "Rerun:" in section and "Machine:" in section and "Date:" in section, \
            f"BENCHMARKS.md section {title!r} lacks its rerun command, machine or date"
