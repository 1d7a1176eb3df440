"""Shared fixtures: a tiny tokenizer and Llama model built inside the tests (no network)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tiny import build_tiny_model_dir, write_alpaca

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray clusters of the tests use token authentication with a token of this test session, set
# before Ray is imported (it reads the mode once): nothing read from or written to ~/.ray.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    return write_alpaca(tmp_path / "data.jsonl", 24)
