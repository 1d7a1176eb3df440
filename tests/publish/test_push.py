"""`dtm push` against a local stand-in for the Hub API (127.0.0.1, never the network): the
model and its card arrive in one commit, no token is a clear refusal, and a failed commit
leaves nothing partial and a rerun completes the repository."""

import pytest
from huggingface_hub import ModelCard

from dtmerge.errors import ConfigError, DtmError
from dtmerge.publish.hub import model_files, push_model

from hub_standin import HubStandIn

TOKEN = "hf_standin_token"


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' default is offline
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the stand-in is local, never via a proxy
    stand_in = HubStandIn(TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    yield stand_in
    stand_in.close()


def _expected(published_run):
    model = published_run / "models" / "dtm"
    return {p.relative_to(model).as_posix(): p.read_bytes() for p in model_files(model)}


def test_push_uploads_the_model_and_its_card_in_one_commit(hub, published_run, capsys):
    from dtmerge.cli.main import main

    assert main(["push", str(published_run), "dtm", "--repo", "me/demo-dtm", "--private"]) == 0
    assert f"{hub.url}/me/demo-dtm/commit/" in capsys.readouterr().out
    repo = hub.repos["me/demo-dtm"]
    assert repo["private"] and len(hub.commits) == 1
    files = repo["files"]
    assert {k: v for k, v in files.items() if k != "README.md"} == _expected(published_run)
    assert "model.safetensors" in files and "config.json" in files
    card = ModelCard(files["README.md"].decode())
    assert card.data.eval_results and "## Alignment tax" in card.text
    assert not (published_run / "models" / "dtm" / "README.md").exists()  # the run is untouched


def test_push_without_a_token_refuses_before_any_request(hub, published_run, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(published_run / "no-hf-home"))  # no saved login either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH",
                        str(published_run / "no-hf-home" / "token"))
    with pytest.raises(DtmError, match="needs a Hugging Face token.*HF_TOKEN.*hf auth login"):
        push_model(published_run, "dtm", "me/demo-dtm")
    from dtmerge.cli.main import main

    assert main(["push", str(published_run), "dtm", "--repo", "me/demo-dtm"]) == 2  # no traceback
    assert hub.repos == {}


def test_a_failed_commit_leaves_nothing_and_a_retry_completes_the_repo(hub, published_run):
    hub.fail_commits = 1
    with pytest.raises(DtmError, match="nothing partial was committed; run `dtm push` again"):
        push_model(published_run, "dtm", "me/demo-dtm", log=lambda *_: None)
    assert hub.repos["me/demo-dtm"]["files"] == {}  # created, but no file of a half upload
    push_model(published_run, "dtm", "me/demo-dtm", log=lambda *_: None)  # exist_ok: reused
    files = hub.repos["me/demo-dtm"]["files"]
    assert {k: v for k, v in files.items() if k != "README.md"} == _expected(published_run)
    assert "README.md" in files and len(hub.commits) == 1


def test_bad_repo_and_variant_are_config_errors(hub, published_run):
    with pytest.raises(ConfigError, match="ORG/NAME"):
        push_model(published_run, "dtm", "just-a-name")
    with pytest.raises(ConfigError, match="no model 'nope'.*available: dtm"):
        push_model(published_run, "nope", "me/x")
    assert hub.repos == {}
