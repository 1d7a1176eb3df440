"""GGUF conversion: a tiny Llama written as GGUF by the test converts back exactly, once."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gguf")

from dtmerge.config import ModelConfig  # noqa: E402
from dtmerge.errors import ModelError  # noqa: E402
from dtmerge.models.gguf import MARKER, convert_gguf_cached, locate_gguf  # noqa: E402
from dtmerge.models import resolve_model_path  # noqa: E402

from tiny_gguf import make_tiny_llama, write_llama_gguf  # noqa: E402

TEXT = "The lazy fox answers instructions after the merge."


@pytest.fixture()
def tiny_gguf(tmp_path):
    torch.set_num_threads(1)
    model, tok = make_tiny_llama(tmp_path)
    path = write_llama_gguf(model, tok, tmp_path / "tiny.gguf")
    return model, tok, path


def test_round_trip_logits_tokenizer_and_cache(tiny_gguf, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok, path = tiny_gguf
    cache = tmp_path / "cache"
    monkeypatch.setenv("DTMERGE_CACHE_DIR", str(cache))

    out = convert_gguf_cached(str(path), None)
    assert (out / "config.json").is_file() and (out / MARKER).is_file()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not list(cache.glob("gguf/.*partial*")), "temporary conversion dir left behind"

    converted = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ctok = AutoTokenizer.from_pretrained(out)
    ids = tok(TEXT, return_tensors="pt").input_ids
    assert ctok(TEXT, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, model(ids).logits, rtol=0, atol=1e-5)

    # Second call (also through a directory + gguf_file, and through the ModelConfig path
    # every stage uses) hits the cache: same dir, nothing rewritten.
    stamp = (out / MARKER).stat().st_mtime_ns
    assert convert_gguf_cached(str(path.parent), "tiny.gguf") == out
    assert resolve_model_path(ModelConfig(path=str(path))) == str(out)
    assert (out / MARKER).stat().st_mtime_ns == stamp


def test_changed_file_gets_a_new_cache_entry(tiny_gguf, tmp_path):
    model, tok, path = tiny_gguf
    first = convert_gguf_cached(str(path), None, cache_dir=tmp_path / "c")
    other, _ = make_tiny_llama(tmp_path / "other", seed=1)
    write_llama_gguf(other, tok, path)  # same name, other weights
    second = convert_gguf_cached(str(path), None, cache_dir=tmp_path / "c")
    assert second != first and (second / MARKER).is_file()


def test_user_mistakes_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        locate_gguf(str(tmp_path / "missing.gguf"), None)
    (tmp_path / "a.gguf").write_bytes(b"")
    with pytest.raises(ModelError, match="a.gguf"):
        locate_gguf(str(tmp_path), "b.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelError, match="cannot convert"):
        convert_gguf_cached(str(tmp_path / "bad.gguf"), None, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*")), "a failed conversion left files in the cache"


def test_missing_gguf_package_is_explained(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelError, match=r"dtmerge\[gguf\]"):
        convert_gguf_cached(str(tmp_path / "m.gguf"), None, cache_dir=tmp_path / "c")


def test_gguf_shipped_in_a_python_package(tiny_gguf, tmp_path, monkeypatch):
    import sys
    import types

    _, _, path = tiny_gguf
    fake = types.ModuleType("fake_model_pkg")
    fake.assemble = lambda: path
    monkeypatch.setitem(sys.modules, "fake_model_pkg", fake)
    out = convert_gguf_cached("pypi:fake-model-pkg", None, cache_dir=tmp_path / "c")
    assert (out / "config.json").is_file()
    with pytest.raises(ModelError, match="pip install not-installed-pkg"):
        locate_gguf("pypi:not-installed-pkg", None)
