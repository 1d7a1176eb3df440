"""Shared fixtures: a tiny tokenizer and Llama model built inside the tests (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny import build_tiny_model_dir, write_alpaca

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def alpaca_file(tmp_path) -> Path:
    return write_alpaca(tmp_path / "data.jsonl", 24)
