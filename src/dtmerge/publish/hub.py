"""Upload one model of a run, with its model card, to a Hugging Face Hub repository.

The whole upload is ONE commit (`HfApi.create_commit` with every file and the card): the Hub
applies a commit entirely or not at all, so an upload that fails half-way leaves the
repository as it was, and running `dtm push` again completes it. (`upload_folder` is avoided
on purpose: with hf_xet installed it may split a large folder into several commits.)
The model directory of the run is read, never written: the card is sent from memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dtmerge.errors import ConfigError, DtmError
from dtmerge.publish.card import CARD_FILE, card_text
from dtmerge.rundir import RunDir

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def hub_token() -> str:
    """The Hub token from HF_TOKEN or `hf auth login`'s saved token, else a clear error."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise DtmError("dtm push needs a Hugging Face token with write access: set HF_TOKEN, "
                       "or run `hf auth login` once (nothing was uploaded)")
    return token


def model_files(model_dir: Path) -> list[Path]:
    """The files of a model directory to upload: all but hidden ones and an old card."""
    return sorted(p for p in model_dir.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)
                  and p.relative_to(model_dir).as_posix() != CARD_FILE)


def push_model(run_dir: str | Path, variant: str, repo_id: str, private: bool = False,
               endpoint: str | None = None, log=print) -> str:
    """Create `repo_id` (if needed) and commit `variant` of the run with its card; returns the
    commit's URL.

    Raises:
        ConfigError: a malformed repo id, or no such run or variant.
        DtmError: no token, offline mode, or the Hub refused (nothing partial was committed).
    """
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if not _REPO_ID.match(repo_id):
        raise ConfigError(f"--repo {repo_id!r}: give the Hub repository as ORG/NAME "
                          "(your user name or an organisation, a slash, the model's name)")
    run = RunDir(run_dir)
    if not (run.root / "config.yaml").is_file():
        raise ConfigError(f"{run.root} is not a run directory (no config.yaml)")
    model_dir = run.model(variant)
    if not model_dir.is_dir():
        have = sorted(p.name for p in run.models_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".")) if run.models_dir.is_dir() else []
        raise ConfigError(f"no model '{variant}' in {run.models_dir}; available: "
                          f"{', '.join(have) or 'none'}")
    if constants.is_offline_mode():
        raise DtmError("HF_HUB_OFFLINE is set: unset it to push (nothing was uploaded)")
    token = hub_token()
    files = model_files(model_dir)
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(model_dir).as_posix(),
                                     path_or_fileobj=str(p)) for p in files]
    operations.append(CommitOperationAdd(
        path_in_repo=CARD_FILE, path_or_fileobj=card_text(run, variant, model_dir).encode()))
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        log(f"push: {len(files)} files of {model_dir} and {CARD_FILE} -> {repo_id} (one commit)")
        info = api.create_commit(repo_id, operations, repo_type="model",
                                 commit_message=f"dtmerge: {variant} of run {run.root.name}")
    except HfHubHTTPError as err:
        raise DtmError(f"upload to {repo_id} failed: {err}. The upload is one commit, so nothing "
                       "partial was committed; run `dtm push` again to retry") from None
    return str(info.commit_url)
